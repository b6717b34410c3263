"""The Bento's layer: reproducible (the same Bento, exported twice, gives one digest), owned by BentoML's
user under BENTO_PATH, refusing entries that reach outside, sparse files (a few bytes that unpack to any
size of zeros) and sizes over the caps, with nothing pushed; and the check of a Bento's requirements
(read with a limit) against the serving base's lock, with the base's tag the workflow computes the same
way."""

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

import deploy.layer
from deploy.build import DEPENDENCIES_DIFFER, main
from deploy.layer import BENTOML_UID, LAYER_FILE, MAX_TEXT_BYTES, BentoError, build_layer, read_member
from deploy.serving_base import CONTAINERFILE, LOCK, base_tag, differences, locked_versions
from tests.conftest import REPO
from tests.deploy.registries import BENTO_FILES, REQUIREMENTS, make_bento

LOCKED = locked_versions((REPO / LOCK).read_text())


def test_the_same_bento_exported_twice_gives_the_same_layer_digest(tmp_path: Path) -> None:
    first = make_bento(tmp_path / "a.bento", BENTO_FILES, mtime=1_700_000_000)
    again = make_bento(tmp_path / "b.bento", BENTO_FILES, mtime=1_800_000_000, reverse=True)
    one, two = build_layer(first, tmp_path / "one"), build_layer(again, tmp_path / "two")
    assert one.path.read_bytes() == two.path.read_bytes()
    assert (one.digest, one.diff_id, one.size) == (two.digest, two.diff_id, two.size)
    data = one.path.read_bytes()
    assert one.digest == "sha256:" + hashlib.sha256(data).hexdigest() and one.size == len(data)
    assert one.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    changed = make_bento(tmp_path / "c.bento", {**BENTO_FILES, "src/model/serve.py": b"print(2)\n"})
    assert build_layer(changed, tmp_path / "three").digest != one.digest


def test_the_layer_holds_the_bento_under_its_path_owned_by_bentoml(tmp_path: Path) -> None:
    layer = build_layer(make_bento(tmp_path / "s.bento", BENTO_FILES), tmp_path / "out")
    with tarfile.open(layer.path) as tar:
        members = tar.getmembers()
        names = [member.name for member in members]
        assert names == sorted(names) and names[0] == "home/bentoml/bento"
        assert {member.uid for member in members} == {BENTOML_UID} == {member.gid for member in members}
        assert {member.mtime for member in members} == {0}
        by_name = {member.name: member for member in members}
        weights = "home/bentoml/bento/models/celestial_bodies_classifier/v1/weights.pt"
        extracted = tar.extractfile(weights)
        assert (
            extracted and extracted.read() == BENTO_FILES["models/celestial_bodies_classifier/v1/weights.pt"]
        )
        assert by_name[weights].mode == 0o644, "readable by the user the pod runs as, not writable"
        assert by_name["home/bentoml/bento/env/docker/entrypoint.sh"].mode == 0o755
        assert (
            by_name["home/bentoml/bento/models"].isdir()
            and by_name["home/bentoml/bento/models"].mode == 0o755
        )


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../etc/passwd", tarfile.REGTYPE), ("/etc/passwd", tarfile.REGTYPE), ("./link", tarfile.SYMTYPE)],
)
def test_an_entry_that_reaches_outside_the_bento_or_is_a_link_is_refused(
    tmp_path: Path, name: str, kind: bytes
) -> None:
    bento = tmp_path / "bad.bento"
    with tarfile.open(bento, "w:xz") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, "/etc/shadow" if kind == tarfile.SYMTYPE else ""
        tar.addfile(info)
    with pytest.raises(BentoError, match=r"reaches outside|neither a file"):
        build_layer(bento, tmp_path / "out")


def sparse_bento(path: Path, realsize: int) -> Path:
    """Write the Bento with one more file, PAX-sparse (format 1.0): one byte of data, `realsize` unpacked."""
    plain = make_bento(path.with_suffix(".plain"), BENTO_FILES)
    with tarfile.open(plain) as source, tarfile.open(path, "w:xz", format=tarfile.PAX_FORMAT) as tar:
        for member in source:
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("./GNUSparseFile.0/zeros.bin")
        info.pax_headers = {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": "./models/zeros.bin",
            "GNU.sparse.realsize": str(realsize),
        }
        data = f"1\n{realsize - 1}\n1\n".encode().ljust(512, b"\0") + b"x"  # the map, then the byte
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def append_part(bento: Path, out: Path) -> int:
    """Run the append part against a registry nobody listens on: it must stop before reaching it."""
    return main(
        [
            *("append", "--bento", str(bento), "--base", "127.0.0.1:1/octo/m-base:1"),
            *("--lock", str(REPO / LOCK), "--registry", "127.0.0.1:1/octo", "--sha", "a" * 40),
            *("--out", str(out)),
        ]
    )


def test_a_sparse_file_is_refused_and_nothing_is_pushed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bento = sparse_bento(tmp_path / "s.bento", 20 * 1024 * 1024)
    assert bento.stat().st_size < 10_000, "a few KB that would unpack to 20 MB of zeros"
    with pytest.raises(BentoError, match=r"models/zeros\.bin' is a sparse file"):
        build_layer(bento, tmp_path / "layer")
    assert not (tmp_path / "layer" / LAYER_FILE).exists()
    assert append_part(bento, tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert "is a sparse file" in error and "127.0.0.1:1" not in error, "refused before the registry"
    assert not (tmp_path / "out" / "image.json").exists()


@pytest.mark.parametrize(
    ("constant", "cap", "says"),
    [
        ("MAX_TOTAL_BYTES", 10_000, "the Bento's files are over 10000 bytes in all"),
        ("MAX_FILE_BYTES", 10_000, "weights.pt' is over 10000 bytes"),
    ],
)
def test_a_bento_over_the_size_caps_is_refused_and_nothing_is_pushed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    constant: str,
    cap: int,
    says: str,
) -> None:
    assert sum(map(len, BENTO_FILES.values())) > cap and len(REQUIREMENTS) < cap
    monkeypatch.setattr(deploy.layer, constant, cap)
    bento = make_bento(tmp_path / "s.bento", BENTO_FILES)
    with pytest.raises(BentoError, match=says):
        build_layer(bento, tmp_path / "layer")
    assert not (tmp_path / "layer" / LAYER_FILE).exists()
    assert append_part(bento, tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert says in error and "127.0.0.1:1" not in error, "refused before the registry"
    assert not (tmp_path / "out" / "image.json").exists()


def test_requirements_over_the_limit_are_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    padding = b"# " + b"x" * MAX_TEXT_BYTES + b"\n"
    files = {**BENTO_FILES, "env/python/requirements.txt": REQUIREMENTS + padding}
    bento = make_bento(tmp_path / "s.bento", files)
    with pytest.raises(BentoError, match=f"requirements.txt is over {MAX_TEXT_BYTES} bytes"):
        read_member(bento, "env/python/requirements.txt")
    assert main(["check", "--bento", str(bento), "--lock", str(REPO / LOCK)]) == 1
    assert "is over 1048576 bytes" in capsys.readouterr().err
    assert append_part(bento, tmp_path / "out") == 1
    assert not (tmp_path / "out" / "image.json").exists()
    exact = {**BENTO_FILES, "env/python/requirements.txt": REQUIREMENTS.ljust(MAX_TEXT_BYTES, b"\n")}
    assert read_member(make_bento(tmp_path / "e.bento", exact), "env/python/requirements.txt").startswith(
        "--index-url"
    ), "the limit itself is allowed"


def test_the_lock_satisfies_the_bento_of_this_project() -> None:
    assert differences(REQUIREMENTS.decode(), LOCKED) == []
    assert str(LOCKED["torch"]) == "2.13.0+cpu"


@pytest.mark.parametrize(
    ("requirement", "says"),
    [
        ("torch==2.12.0", "torch==2.12.0: the base has torch 2.13.0+cpu"),
        ("scikit-learn>=1.5", "scikit-learn>=1.5: not in the base lock"),
        ("numpy<2", "numpy<2: the base has numpy"),
        ("bentoml[io]==1.4.40", "bentoml[io]==1.4.40: asks for extras"),
        (
            "mylib @ https://example.com/mylib.whl",
            "mylib @ https://example.com/mylib.whl: installed from a URL",
        ),
    ],
)
def test_a_requirement_the_lock_does_not_satisfy_is_named(requirement: str, says: str) -> None:
    text = REQUIREMENTS.decode() + requirement + "\n"
    [problem] = differences(text, LOCKED)
    assert problem.startswith(says)


def test_requirements_for_another_platform_and_comments_are_not_checked() -> None:
    text = "# a comment\n--extra-index-url https://x\npywin32==306 ; sys_platform == 'win32'\nnumpy  # any\n"
    assert differences(text, LOCKED) == []


def test_check_exits_3_and_names_the_packages_when_the_bento_needs_a_full_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {**BENTO_FILES, "env/python/requirements.txt": REQUIREMENTS + b"scikit-learn==1.5.0\n"}
    bento = make_bento(tmp_path / "s.bento", files)
    assert read_member(bento, "env/python/requirements.txt").endswith("scikit-learn==1.5.0\n")
    assert main(["check", "--bento", str(bento), "--lock", str(REPO / LOCK)]) == DEPENDENCIES_DIFFER
    error = capsys.readouterr().err
    assert "scikit-learn==1.5.0: not in the base lock" in error and "full image build" in error
    same = make_bento(tmp_path / "same.bento", BENTO_FILES)
    assert main(["check", "--bento", str(same), "--lock", str(REPO / LOCK)]) == 0


def test_the_base_tag_is_what_the_workflow_computes_with_sha256sum() -> None:
    shell = subprocess.run(
        f"cat {LOCK} {CONTAINERFILE} | sha256sum | cut -c1-16",
        shell=True,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    tag = base_tag(REPO / LOCK, REPO / CONTAINERFILE)
    assert tag == shell.stdout.strip() and len(tag) == 16
