"""The network CA: what it issues, file modes, and the refusals a user sees."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vmesh.errors import Conflict, InvalidInput, NotFound
from vmesh.federation.ca import check_node_cert, init_ca, issue_node_cert, node_uri
from vmesh.federation.cli import ca as ca_cli

pytestmark = pytest.mark.unit

CITY = "33010000002006000001"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_node_certificate_names_the_node_and_serves_both_ends(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", name="浙江省视频一张网")
    files = issue_node_cert(
        tmp_path / "ca",
        CITY,
        out_dir=tmp_path / "out",
        name="杭州市节点",
        sans=["10.77.0.12", "DNS:hz.example", "IP:::1"],
    )
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CITY
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [node_uri(CITY)]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.77.0.12", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["hz.example"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _mode(files.key) == 0o600 and _mode(tmp_path / "ca" / "ca.key") == 0o600
    info = check_node_cert(files.ca, files.cert, files.key, CITY)
    assert info.code == CITY and info.ips == ("10.77.0.12", "::1")


def test_existing_ca_is_never_overwritten(tmp_path: Path) -> None:
    init_ca(tmp_path, name="net")
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(Conflict, match="never overwritten"):
        init_ca(tmp_path, name="net")
    assert (tmp_path / "ca.key").read_bytes() == before


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("3301000000200600000", "must be 20 digits"),
        ("33010000001326000001", "type 200"),
        ("3301000000200600000x", "digits 0-9 only"),
    ],
)
def test_bad_node_code_is_refused(tmp_path: Path, code: str, reason: str) -> None:
    init_ca(tmp_path / "ca", name="net")
    with pytest.raises(InvalidInput) as e:
        issue_node_cert(tmp_path / "ca", code, out_dir=tmp_path / "out")
    assert e.value.errors[0].field == "node" and reason in e.value.errors[0].reason
    assert not (tmp_path / "out").exists()


def test_bad_san_is_refused(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", name="net")
    for bad in ("IP:hz.example", "has space", ""):
        with pytest.raises(InvalidInput) as e:
            issue_node_cert(tmp_path / "ca", CITY, out_dir=tmp_path / "out", sans=[bad])
        assert e.value.errors[0].field == "san"


def test_missing_ca_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="vmesh ca init"):
        issue_node_cert(tmp_path / "nothing", CITY, out_dir=tmp_path / "out")


def test_check_refuses_foreign_wrong_node_and_mismatched_key(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", name="net")
    init_ca(tmp_path / "other", name="other")
    good = issue_node_cert(tmp_path / "ca", CITY, out_dir=tmp_path / "good")
    foreign = issue_node_cert(tmp_path / "other", CITY, out_dir=tmp_path / "foreign")
    second = issue_node_cert(tmp_path / "ca", "33020000002006000001", out_dir=tmp_path / "2")
    with pytest.raises(InvalidInput) as e:
        check_node_cert(good.ca, foreign.cert, foreign.key, CITY)
    assert e.value.errors[0].field == "federation.cert_file"
    assert "not issued by the network CA" in e.value.errors[0].reason
    with pytest.raises(InvalidInput, match="issued for node '33020000002006000001'"):
        check_node_cert(good.ca, second.cert, second.key, CITY)
    with pytest.raises(InvalidInput) as e:
        check_node_cert(good.ca, good.cert, second.key, CITY)
    assert e.value.errors[0].field == "federation.key_file"
    with pytest.raises(InvalidInput) as e:
        check_node_cert(good.ca, tmp_path / "missing.pem", good.key, CITY)
    assert e.value.errors[0].field == "federation.cert_file"


def test_cli_init_and_issue(tmp_path: Path) -> None:
    runner = CliRunner()
    ca_dir = tmp_path / "ca"
    r = runner.invoke(ca_cli, ["init", "--dir", str(ca_dir), "--name", "浙江"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(ca_cli, ["issue", CITY, "--dir", str(ca_dir), "--san", "10.0.0.5"])
    assert r.exit_code == 0, r.output
    out = ca_dir / "issued" / CITY
    assert check_node_cert(out / "ca.pem", out / "node.pem", out / "node.key", CITY).ips == (
        "10.0.0.5",
    )
    r = runner.invoke(ca_cli, ["issue", "123", "--dir", str(ca_dir)])
    assert r.exit_code != 0 and "must be 20 digits" in str(r.exception)
