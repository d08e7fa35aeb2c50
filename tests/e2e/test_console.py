"""The web console in Debian's Chromium against a real node process.

An administrator logs in, walks the org tree down to a village, finds a camera by a Chinese name,
opens it and finds that access (``directory.view`` of its code) in the audit view. A county-scoped
operator sees only the county's subtree, cannot open another county's camera, and finds that
refusal in the audit view.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from e2e.console_node import ADMIN, LOCKOUT_FAILURES, PROVINCE, XIHU, XIHU_OPERATOR, Node

pytestmark = pytest.mark.e2e

HANGZHOU = "33010000002166000001"
WENZHOU = "33030000002166000001"
ZHUANTANG = "33010601002166000001"
LONGWU = "33010601002166000002"
LONGWU_GATE_CAM = "33010601001326000101"
LONGWU_TEA_CAM = "33010601001326000102"
XIKENG_CAM = "33032801001326000101"
WENCHENG = "33032800002166000001"


def log_in(page: Page, node: Node, username: str, password: str) -> None:
    page.goto(node.base_url + "/")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("current-user")).to_contain_text(username)


def expand(page: Page, code: str) -> None:
    page.get_by_test_id(f"tree-toggle-{code}").click()
    expect(page.get_by_test_id(f"tree-toggle-{code}")).to_have_attribute("aria-expanded", "true")


def search(page: Page, q: str) -> None:
    page.get_by_test_id("search-q").fill(q)
    page.get_by_test_id("search-submit").click()


def test_admin_finds_camera_via_tree_and_search_and_its_access_in_audit(
    page: Page, node: Node
) -> None:
    page.goto(node.base_url + "/")
    # zh-CN by default; a wrong password is refused with the reason in Chinese.
    expect(page.get_by_test_id("login-submit")).to_have_text("登录")
    page.get_by_test_id("login-username").fill(ADMIN[0])
    page.get_by_test_id("login-password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("用户名或密码错误")
    expect(page.get_by_test_id("login-error")).to_have_attribute("data-status", "401")

    page.get_by_test_id("login-password").fill(ADMIN[1])
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("current-user")).to_contain_text("admin")
    expect(page.get_by_test_id("current-scope")).to_contain_text("浙江省")

    # The tree, one level at a time, down to a village and its endpoints.
    roots = page.get_by_test_id("tree").locator(":scope > li.tree-node")
    expect(roots).to_have_count(1)
    expect(page.get_by_test_id(f"tree-label-{PROVINCE}")).to_have_text("浙江省")
    # Lazy: a level is loaded when its parent is expanded.
    expect(page.get_by_test_id(f"tree-label-{HANGZHOU}")).to_have_count(0)
    expand(page, PROVINCE)
    expect(page.get_by_test_id(f"tree-label-{HANGZHOU}")).to_have_text("杭州市")
    expect(page.get_by_test_id(f"tree-label-{WENZHOU}")).to_have_text("温州市")
    for code in (HANGZHOU, XIHU, ZHUANTANG):
        expand(page, code)
    village = page.get_by_test_id(f"tree-label-{LONGWU}")
    expect(village).to_have_text("龙坞村")
    # Online/total of the village's direct children: two of its three endpoints are online.
    expect(page.get_by_test_id(f"tree-counts-{LONGWU}")).to_have_text("2/3")
    expand(page, LONGWU)
    expect(page.get_by_test_id(f"tree-label-{LONGWU_GATE_CAM}")).to_have_text("龙坞村口摄像机")
    expect(page.get_by_test_id(f"tree-label-{LONGWU_TEA_CAM}")).to_have_text("龙坞茶园入口摄像机")
    expect(
        page.get_by_test_id(f"tree-node-{LONGWU_TEA_CAM}").locator(".dot").first
    ).to_have_attribute("data-status", "offline")

    # Search by a Chinese substring: both villages' gate cameras, not the tea-garden one.
    search(page, "村口")
    expect(page.get_by_test_id(f"search-result-{LONGWU_GATE_CAM}")).to_be_visible()
    expect(page.get_by_test_id(f"search-result-{XIKENG_CAM}")).to_be_visible()
    expect(page.get_by_test_id(f"search-result-{LONGWU_TEA_CAM}")).to_have_count(0)

    # Open the camera: its details, with the path from the province down.
    page.get_by_test_id(f"search-result-{LONGWU_GATE_CAM}").click()
    expect(page).to_have_url(re.compile(f"#/dir/{LONGWU_GATE_CAM}$"))
    expect(page.get_by_test_id("detail-code")).to_have_text(LONGWU_GATE_CAM)
    expect(page.get_by_test_id("detail-name")).to_contain_text("龙坞村口摄像机")
    expect(page.get_by_test_id("detail-status")).to_contain_text("在线")
    expect(page.get_by_test_id("detail-path")).to_have_text(
        re.compile("浙江省.*杭州市.*西湖区.*转塘街道.*龙坞村.*龙坞村口摄像机")
    )
    expect(page.get_by_test_id("detail-tags")).to_contain_text("雪亮")
    expect(page.get_by_test_id("detail-location")).to_contain_text("30.1712")
    expect(page.get_by_test_id("detail-attrs")).to_contain_text(
        "rtsp://camera.example.invalid/main"
    )

    # That access is in the audit log, found with the audit view's filters.
    page.get_by_test_id("nav-audit").click()
    page.get_by_test_id("audit-target").fill(LONGWU_GATE_CAM)
    page.get_by_test_id("audit-action").fill("directory.view")
    page.get_by_test_id("audit-submit").click()
    row = page.locator(
        f'[data-testid="audit-row"][data-target="{LONGWU_GATE_CAM}"][data-action="directory.view"]'
    ).first
    expect(row).to_be_visible()
    expect(row.get_by_test_id("audit-row-username")).to_have_text("admin")
    expect(row).to_have_attribute("data-result", "ok")
    # The filter narrowed the list to that target.
    expect(
        page.locator(f'[data-testid="audit-row"]:not([data-target="{LONGWU_GATE_CAM}"])')
    ).to_have_count(0)

    # English on request, remembered across a reload.
    page.get_by_test_id("lang-switch").click()
    expect(page.get_by_test_id("nav-audit")).to_have_text("Audit log")
    page.reload()
    expect(page.get_by_test_id("nav-dir")).to_have_text("Directory")
    assert page.errors == []  # type: ignore[attr-defined]


def test_county_operator_sees_only_its_subtree(page: Page, node: Node) -> None:
    log_in(page, node, *XIHU_OPERATOR)
    expect(page.get_by_test_id("current-scope")).to_contain_text("西湖区")

    # The tree starts at the county; the province, other cities and counties are not there.
    roots = page.get_by_test_id("tree").locator(":scope > li.tree-node")
    expect(roots).to_have_count(1)
    expect(page.get_by_test_id(f"tree-label-{XIHU}")).to_have_text("西湖区")
    expect(page.get_by_test_id(f"tree-label-{PROVINCE}")).to_have_count(0)
    expand(page, XIHU)
    expand(page, ZHUANTANG)
    expect(page.get_by_test_id(f"tree-label-{LONGWU}")).to_have_text("龙坞村")
    expect(page.get_by_test_id("tree")).not_to_contain_text("温州市")
    expect(page.get_by_test_id("tree")).not_to_contain_text("文成县")

    # Search finds only the county's own gate camera.
    search(page, "村口")
    expect(page.get_by_test_id(f"search-result-{LONGWU_GATE_CAM}")).to_be_visible()
    expect(page.get_by_test_id(f"search-result-{XIKENG_CAM}")).to_have_count(0)

    # Another county's camera, opened by its address, is refused as if it did not exist.
    page.goto(f"{node.base_url}/#/dir/{XIKENG_CAM}")
    error = page.get_by_test_id("detail-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-status", re.compile("^(403|404)$"))
    expect(page.get_by_test_id("detail-panel")).not_to_contain_text("西坑村口摄像机")

    # The refusal is in the audit log, which the operator may read for their own actions.
    page.get_by_test_id("nav-audit").click()
    page.get_by_test_id("audit-target").fill(XIKENG_CAM)
    page.get_by_test_id("audit-result").select_option("denied")
    page.get_by_test_id("audit-submit").click()
    row = page.locator(
        f'[data-testid="audit-row"][data-target="{XIKENG_CAM}"][data-result="denied"]'
    ).first
    expect(row).to_be_visible()
    expect(row.get_by_test_id("audit-row-username")).to_have_text(XIHU_OPERATOR[0])
    # No user administration for an operator.
    expect(page.get_by_test_id("nav-users")).to_have_count(0)
    assert page.errors == []  # type: ignore[attr-defined]


def test_admin_manages_users_and_login_explains_refusals(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    admin = pages()
    log_in(admin, node, *ADMIN)
    admin.get_by_test_id("nav-users").click()
    expect(admin.get_by_test_id(f"user-row-{XIHU_OPERATOR[0]}")).to_be_visible()

    # A user whose scope is no org unit is refused, naming the field; nothing is created.
    username, password = "wencheng_view", "Wc-viewer-2024!"
    admin.get_by_test_id("new-user-username").fill(username)
    admin.get_by_test_id("new-user-display-name").fill("文成县查看员")
    admin.get_by_test_id("new-user-password").fill(password)
    admin.get_by_test_id("new-user-scope").fill("33032800002166009999")
    admin.get_by_test_id("new-user-submit").click()
    expect(admin.get_by_test_id("users-error")).to_be_visible()
    expect(
        admin.locator('[data-testid="users-error-field"][data-field="scope_code"]')
    ).to_be_visible()
    expect(admin.get_by_test_id(f"user-row-{username}")).to_have_count(0)

    admin.get_by_test_id("new-user-scope").fill(WENCHENG)
    admin.get_by_test_id("new-user-submit").click()
    expect(admin.get_by_test_id("users-notice")).to_contain_text(username)
    expect(admin.get_by_test_id(f"user-row-{username}")).to_contain_text("文成县")

    # The new viewer logs in and sees the county it was given.
    viewer = pages()
    log_in(viewer, node, username, password)
    expect(viewer.get_by_test_id("current-scope")).to_contain_text("文成县")
    expect(viewer.get_by_test_id(f"tree-label-{WENCHENG}")).to_have_text("文成县")

    # Wrong passwords lock the account; the login page says so, and the right one is refused too.
    other = pages()
    other.goto(node.base_url + "/")
    other.get_by_test_id("login-username").fill(username)
    for _ in range(LOCKOUT_FAILURES):
        other.get_by_test_id("login-password").fill("wrong-password")
        other.get_by_test_id("login-submit").click()
    expect(other.get_by_test_id("login-error")).to_have_attribute("data-status", "423")
    expect(other.get_by_test_id("login-error")).to_contain_text("锁定")
    other.get_by_test_id("login-password").fill(password)
    other.get_by_test_id("login-submit").click()
    expect(other.get_by_test_id("login-error")).to_have_attribute("data-status", "423")

    # The admin sees the lock and lifts it; the user gets in.
    admin.get_by_test_id("users-search").click()
    expect(admin.get_by_test_id(f"user-state-{username}")).to_contain_text("已锁定")
    admin.get_by_test_id(f"user-unlock-{username}").click()
    expect(admin.get_by_test_id(f"user-state-{username}")).to_contain_text("正常")
    other.get_by_test_id("login-password").fill(password)
    other.get_by_test_id("login-submit").click()
    expect(other.get_by_test_id("current-user")).to_contain_text(username)

    # A reset password replaces the old one.
    new_password = "Wc-viewer-2025!"
    admin.get_by_test_id(f"user-reset-{username}").click()
    admin.get_by_test_id("users-new-password").fill(new_password)
    admin.get_by_test_id("users-new-password-save").click()
    expect(admin.get_by_test_id("users-notice")).to_contain_text(f"已重置 {username} 的密码")
    again = pages()
    again.goto(node.base_url + "/")
    again.get_by_test_id("login-username").fill(username)
    again.get_by_test_id("login-password").fill(password)
    again.get_by_test_id("login-submit").click()
    expect(again.get_by_test_id("login-error")).to_have_attribute("data-status", "401")
    again.get_by_test_id("login-password").fill(new_password)
    again.get_by_test_id("login-submit").click()
    expect(again.get_by_test_id("current-user")).to_contain_text(username)

    # Disabled: the login page says the account is disabled, in English when asked.
    admin.get_by_test_id(f"user-toggle-{username}").click()
    expect(admin.get_by_test_id(f"user-state-{username}")).to_contain_text("已停用")
    last = pages()
    last.goto(node.base_url + "/")
    last.get_by_test_id("lang-switch").click()
    expect(last.get_by_test_id("login-submit")).to_have_text("Log in")
    last.get_by_test_id("login-username").fill(username)
    last.get_by_test_id("login-password").fill(new_password)
    last.get_by_test_id("login-submit").click()
    expect(last.get_by_test_id("login-error")).to_have_attribute("data-status", "403")
    expect(last.get_by_test_id("login-error")).to_contain_text("disabled")
    for p in (admin, viewer, other, again, last):
        assert p.errors == []


def drop_the_first(page: Page, pattern: str, error: str) -> list[str]:
    """Make the browser fail the first request for ``pattern`` with ``error`` (a Playwright
    network error code) and let the later ones through; the list holds the dropped URL."""
    dropped: list[str] = []

    def handle(route):  # type: ignore[no-untyped-def]
        if dropped:
            route.continue_()
        else:
            dropped.append(route.request.url)
            route.abort(error)

    page.route(pattern, handle)
    return dropped


def test_console_starts_again_when_a_module_is_dropped_on_the_way(pages, node: Node) -> None:  # type: ignore[no-untyped-def]
    """Chromium drops requests waiting for a connection when the machine's network changes (a VPN
    comes up, Wi-Fi roams) and then runs none of the console's modules. The console notices,
    reloads itself and shows the login page; a read dropped the same way is asked again; when the
    modules never arrive, it says so in both languages instead of staying blank."""
    page = pages()
    main_loads: list[str] = []
    page.on("request", lambda r: r.url.endswith("/js/main.js") and main_loads.append(r.url))
    dropped = drop_the_first(page, "**/js/views/alarms.js", "internetdisconnected")
    page.goto(node.base_url + "/")
    expect(page.get_by_test_id("login-username")).to_be_visible()
    assert dropped == [node.base_url + "/js/views/alarms.js"]
    assert len(main_loads) == 2, main_loads  # the first graph failed; the reload's ran
    assert page.evaluate("sessionStorage.getItem('vmesh.bootAttempts')") is None

    # A read of the API dropped once is asked again: the tree appears.
    roots_dropped = drop_the_first(page, "**/api/directory/roots*", "connectionreset")
    page.get_by_test_id("login-username").fill(ADMIN[0])
    page.get_by_test_id("login-password").fill(ADMIN[1])
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id(f"tree-label-{PROVINCE}")).to_have_text("浙江省")
    assert len(roots_dropped) == 1
    expect(page.get_by_test_id("tree-error")).to_have_count(0)

    # Modules that never arrive: after its bounded retries the page says so.
    never = pages()
    never.route("**/js/views/alarms.js", lambda route: route.abort("internetdisconnected"))
    never.goto(node.base_url + "/")
    message = never.get_by_test_id("boot-message")
    expect(message).to_have_attribute("data-state", "failed", timeout=30_000)
    expect(message).to_contain_text("请检查网络后刷新页面")
    expect(message).to_contain_text("check the network and reload the page")
    assert page.errors == [] and never.errors == []
