"""Who may see a camera's recordings and snapshots: one authorisation point.

``authorise_playback(ctx, principal, code, action)`` is THE hook every playback, timeline, clip
and snapshot request goes through. Today it checks scope: a camera of this node's directory must
lie in the user's scope subtree (``Principal.covers``); a camera of another node (the catalogue)
must lie in the user's scope division (``vmesh.media.remote.covers_remote``). Anything else is
answered as not found (as the directory does) and audited ``denied``.

For the grants capability (``vmesh.grants``): add the grant check here — a camera outside scope
but covered by a live grant to the user's unit is allowed; return the grant's id and purpose in
``Playable.grant`` / ``Playable.purpose`` so the audit rows written by ``vmesh.recording.api``
carry them.

Public: ``Playable``, ``authorise_playback``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from vmesh.auth.principal import Principal
from vmesh.directory.models import Entry
from vmesh.errors import Forbidden, NotFound
from vmesh.media.remote import covers_remote, remote_camera
from vmesh.node.context import NodeContext


@dataclass(frozen=True)
class Playable:
    code: str
    name: str
    path: str
    attrs: str
    origin_node: str | None = None  # None: this node's own camera
    grant: str | None = None
    purpose: str | None = None


async def authorise_playback(
    ctx: NodeContext, principal: Principal, code: str, action: str = "recording.playback"
) -> Playable:
    """The camera ``code`` if ``principal`` may play back (or snapshot) it, else ``NotFound``
    (audited ``denied`` under ``action``). See the module docstring."""
    async with ctx.db.sessions() as s:
        e = (await s.execute(select(Entry).where(Entry.code == code))).scalar_one_or_none()
    if e is not None and e.kind == "camera":
        if principal.covers(e.path):
            return Playable(e.code, e.name, e.path, e.attrs)
    elif e is None:
        r = await remote_camera(ctx.db, code, ctx.config.node.code)
        if r is not None and r.kind == "camera" and covers_remote(principal, code):
            return Playable(r.code, r.name, "", r.attrs or "{}", origin_node=r.origin_node)
    grants = getattr(ctx, "grants", None)
    if grants is not None:  # vmesh.grants: outside the scope, by an active grant
        try:
            found = await grants.authorise_code(principal, code)
        except Forbidden as ex:  # the user's grant cannot be used: say why
            await ctx.audit.write(principal, action, code, "denied", {"reason": ex.detail})
            raise
        if found is not None:
            cam, use = found
            attrs = e.attrs if e is not None else "{}"
            return Playable(
                cam.code, cam.name, cam.path, attrs, cam.origin_node, use.grant, use.purpose
            )
    await ctx.audit.write(principal, action, code, "denied", {"reason": "outside scope"})
    raise NotFound(f"camera {code} not found")
