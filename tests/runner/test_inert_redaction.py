"""A log's end goes into a PR comment: no credential may survive, and ordinary lines stay as they are.

Each kind of secret is put in the middle of a line, at its start, at its end, alone, URL-encoded,
and across the boundary of the tail that is kept. The secrets are built here at run time (no
secret scanner should mistake this file for a leak); each is random enough to be recognised.
"""

import base64
import json
import random
import string
from urllib.parse import quote

import pytest

from runner.report.failure import log_tail
from runner.report.redact import redact, tail
from runner.report.render import markdown
from tests.report_fixtures import report

rng = random.Random(7)
ALNUM = string.ascii_letters + string.digits


def chars(n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt() -> str:
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"iss": "12345", "iat": 1700000000, "exp": 1700000600}).encode())
    return f"{header}.{payload}.{b64url(rng.randbytes(64))}"


def jit_config() -> str:
    config = {".runner": b64url(rng.randbytes(300)), ".credentials": b64url(rng.randbytes(200))}
    return base64.b64encode(json.dumps(config).encode()).decode()


def pem_lines() -> list[str]:
    body = base64.b64encode(rng.randbytes(1190)).decode()
    return [
        "-----BEGIN RSA PRIVATE KEY-----",
        *(body[i : i + 64] for i in range(0, len(body), 64)),
        "-----END RSA PRIVATE KEY-----",
    ]


KEY = pem_lines()
AWS_SECRET = chars(38, ALNUM + "+/") + "/+"
SECRETS = {
    "ghp": "ghp_" + chars(36),
    "gho": "gho_" + chars(36),
    "ghu": "ghu_" + chars(36),
    "ghs": "ghs_" + chars(36),
    "ghr": "ghr_" + chars(36),
    "github_pat": "github_pat_" + chars(22) + "_" + chars(59),
    "installation v1": "v1." + chars(40, "0123456789abcdef"),
    "jwt": jwt(),
    "xoxb": "xoxb-" + chars(12, string.digits) + "-" + chars(13, string.digits) + "-" + chars(24),
    "xoxp": "xoxp-" + chars(12, string.digits) + "-" + chars(12, string.digits) + "-" + chars(32),
    "xoxa": "xoxa-2-" + chars(40),
    "xoxr": "xoxr-" + chars(40),
    "xoxs": "xoxs-" + chars(12, string.digits) + "-" + chars(40),
    "aws key id": "AKIA" + chars(16, string.ascii_uppercase + string.digits),
    "aws session key id": "ASIA" + chars(16, string.ascii_uppercase + string.digits),
    "aws secret": f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
    "aws secret (ini)": f"aws_secret_access_key = {AWS_SECRET}",
    "aws secret (json)": f'"SecretAccessKey": "{AWS_SECRET}"',
    "jit env": f"ACTIONS_RUNNER_INPUT_JITCONFIG={jit_config()}",
    "jit flag": f"./run.sh --jitconfig {jit_config()}",
    "jit json": f'"encoded_jit_config": "{jit_config()}"',
    "jit alone": jit_config(),
    "pem on one line": "\\n".join(KEY),
    "bearer": "Authorization: Bearer " + chars(40),
    "url password": f"https://x-access-token:{chars(30)}@github.com/octo-org/model.git",
}
SECRET_PARTS = {  # what must not survive of each: the part that is the secret
    "aws secret": AWS_SECRET,
    "aws secret (ini)": AWS_SECRET,
    "aws secret (json)": AWS_SECRET,
    "jit env": SECRETS["jit env"].split("=", 1)[1],
    "jit flag": SECRETS["jit flag"].rsplit(" ", 1)[1],
    "jit json": SECRETS["jit json"].split('"')[3],
    "pem on one line": "".join(KEY[1:-1]),
    "bearer": SECRETS["bearer"].rsplit(" ", 1)[1],
    "url password": SECRETS["url password"].split(":")[2].split("@")[0],
}
PLACES = {
    "middle": "using {} for the pull",
    "start": "{} was used for the pull",
    "end": "the value is {}",
    "alone": "{}",
    "url-encoded in a query": "GET https://example.com/hook?state=1&payload={}&x=2",
    "after a timestamp": "2026-11-27T10:00:02.1234567Z {}",
    "in quotes": "env: {{'value': '{}'}}",
}


def leaked(secret: str, text: str) -> list[str]:
    """Return the 12-character pieces of a secret (plain or URL-encoded) found in the text."""
    pieces = {secret[i : i + 12] for i in range(0, max(1, len(secret) - 11), 4)}
    encoded = quote(secret, safe="")
    pieces |= {encoded[i : i + 12] for i in range(0, max(1, len(encoded) - 11), 4)}
    return sorted(piece for piece in pieces if piece in text)


@pytest.mark.parametrize("place", PLACES.keys())
@pytest.mark.parametrize("kind", SECRETS.keys())
def test_no_secret_survives_wherever_it_is_on_the_line(kind: str, place: str) -> None:
    secret = SECRETS[kind]
    value = quote(secret, safe="") if place == "url-encoded in a query" else secret
    line = PLACES[place].format(value)
    out = redact(line)
    assert leaked(SECRET_PARTS.get(kind, secret), out) == [], out
    assert "***" in out
    assert tail(f"step 1\n{line}\nstep 3", 3)[1] == out, "the tail redacts the same"


def test_a_multi_line_private_key_is_blanked_out_whole() -> None:
    key = KEY
    out = tail("\n".join(["Loading key", *key, "Signing the JWT", "done"]), 100)
    assert out[0] == "Loading key" and out[-2:] == ["Signing the JWT", "done"]
    assert out[1] == key[0] and out[len(key)] == key[-1], "the markers say what was there"
    assert all(line == "***" for line in out[2 : len(key)]), out
    assert leaked("".join(key[1:-1]), "\n".join(out)) == []


def test_a_private_key_cut_by_the_tail_boundary_leaves_no_line_of_it() -> None:
    """The BEGIN line falls before the tail that is kept: the key's lines inside it are still blanked."""
    key = KEY
    log = "\n".join(["step 1", *key, "step 2", "##[error]Process completed with exit code 1."])
    kept = tail(log, 6)
    assert kept[-2:] == ["step 2", "##[error]Process completed with exit code 1."]
    assert kept[:-3] == ["***"] * 3 and kept[-3] == key[-1]
    assert leaked("".join(key[1:-1]), "\n".join(kept)) == []


def test_a_private_key_without_its_end_is_blanked_to_its_last_line() -> None:
    key = KEY[:-6]  # the log was cut before the key's end
    out = tail("\n".join(["step 1", *key, "Traceback (most recent call last):", "KeyError: 'x'"]), 100)
    assert out[-2:] == ["Traceback (most recent call last):", "KeyError: 'x'"]
    assert leaked("".join(key[1:]), "\n".join(out)) == []


def test_a_url_encoded_private_key_is_blanked_out() -> None:
    encoded = quote("\n".join(KEY), safe="")
    out = redact(f"POST /upload?key={encoded}")
    assert leaked("".join(KEY[1:-1]), out) == [] and "***" in out


def test_a_failed_jobs_log_with_timestamps_leaks_no_key_or_token() -> None:
    key = KEY
    lines = [
        "Run dvc pull",
        *key,
        f"token {SECRETS['ghs']}",
        "ERROR: 403",
        "##[error]Process completed",
        "cleanup",
    ]
    log = "\n".join(f"2026-11-27T10:00:{i:02}.0000000Z {line}" for i, line in enumerate(lines))
    kept = log_tail(log)
    assert kept[-2:] == ["ERROR: 403", "##[error]Process completed"]
    assert leaked("".join(key[1:-1]) + SECRETS["ghs"], "\n".join(kept)) == []


def test_a_report_with_secrets_in_its_log_tail_renders_them_blanked() -> None:
    """report.json is not trusted to have been redacted: the bot redacts its log lines once more."""
    failed = report(stages={"failed": "train"}, log_tail=[SECRETS["xoxb"], *KEY, SECRETS["jwt"]])
    text = markdown(failed, {})
    assert leaked(SECRETS["xoxb"] + "".join(KEY[1:-1]) + SECRETS["jwt"], text) == []


ORDINARY = [
    "Epoch 3/12 loss=0.4312 val_acc=0.8812 lr=0.003",
    "max_tokens: 512",
    "tokenizer: bert-base-uncased",
    "num_tokens=4096 token_count: 123456",
    "use_auth_token=True",
    "Running stage 'train':",
    "> python -m model.train --params params.yaml",
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "ERROR: failed to pull data from the cloud - 403 Forbidden",
    "md5: 3f2a9c1e7b4d5a6f8e9d0c1b2a3f4e5d",
    "9b2c4e8f1a3d5c7e9f0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c",
    "Downloading model.safetensors: 100%|██████████| 1.20G/1.20G [00:12<00:00, 99.1MB/s]",
    "https://github.com/octo-org/model/actions/runs/123/job/9",
    "DVC remote storage (s3://orbit-dvc/celestial)",
    '  File "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1501, in _call_impl',
    "Use --password-stdin to read the password",
    "eyes on the validation loss: 0.21 (eyJ is not a word)",
    "AKIAlike words: AKIA-something short",
    "progress 50% done, 100%25 encoded",
    "##[group]Run actions/checkout@v4",
    "",
]


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_log_lines_survive_unchanged(line: str) -> None:
    assert redact(line) == line
    assert tail(f"{line}\nnext", 2) == ([line, "next"] if line else ["next"])
