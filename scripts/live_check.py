"""Run the real pipeline end to end against the real NAIP catalogs, by hand: never part of CI.

planetary-computer: a STAC search of Planetary Computer's ``naip`` collection (4 items in North
Dakota), signed with the planetary-computer package. aws naip-analytic: 4 COGs of the
requester-pays ``naip-analytic`` bucket (us-west-2), listed with boto3 or given with --aws-keys;
run only with AWS credentials, which pay for the transfer. Each check is a ``landcover run`` in a
subprocess and passes when it exits 0, its COG validates, its report JSON exists, and no part of
a signed URL (sig=, se=<date>, sv=<date>, X-Amz-Signature, the SAS token, the AWS secret key) is in
any file of its output folder or in its stdout or stderr. A check that cannot run here (no
network, no credentials) is SKIPPED, which is not a pass; the exit code is 1 when one failed.
From the repository's root:

    .venv/bin/pip install -e ".[planetary-computer]"
    .venv/bin/python scripts/live_check.py [--out DIR] [--only pc|aws] [--items N] [--bbox W S E N] [--aws-keys s3://...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from rio_cogeo.cogeo import cog_validate

REPO = Path(__file__).resolve().parents[1]
PC_STAC = "https://planetarycomputer.microsoft.com/api/stac/v1"
PC_BLOB = ("naipeuwest", "naip")  # the storage account and container of Planetary Computer's NAIP
AWS_BUCKET, AWS_REGION, AWS_PREFIX = "naip-analytic", "us-west-2", "nd/2020/60cm/rgbir_cog/46096/"
BBOX = (-97.0, 46.9, -96.9, 47.0)
RUN_TIMEOUT_S = 3600
# What follows sig=, se= and sv= keeps random bytes in the COG and PNGs from matching.
LEAKS = {"sig=": rb"sig=[A-Za-z0-9%+/]{8}", "se=<date>": rb"se=\d{4}-\d\d-\d\d", "sv=<date>": rb"sv=\d{4}-\d\d-\d\d", "X-Amz-Signature": rb"X-Amz-Signature"}
REST = {"features": {"indices": ["ndvi"]}, "model": {"k": 6, "order_by": "ndvi"}, "sample": {"size": 200_000}, "dask": {"chunk": 2048}}
BAND_NAMES = ["red", "green", "blue", "nir"]  # NAIP's four bands; NDVI needs red and nir named


@dataclass(frozen=True)
class Check:
    name: str
    folder: str
    probe: Callable[[argparse.Namespace], str | None]  # why it cannot run here, or None
    inputs: Callable[[argparse.Namespace], dict[str, Any]]  # the config's input section
    secrets: Callable[[], dict[str, bytes]]  # values that must appear nowhere, by what they are


def reach(url: str) -> str | None:
    """None when ``url`` answers at all (any HTTP status), else why not."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
    except urllib.error.HTTPError:
        return None
    except OSError as exc:  # URLError, timeouts
        return f"no network: cannot reach {urlsplit(url).hostname}: {getattr(exc, 'reason', exc)}"
    return None


def pc_probe(args: argparse.Namespace) -> str | None:
    missing = None if find_spec("planetary_computer") else 'no planetary-computer package: .venv/bin/pip install -e ".[planetary-computer]"'
    return reach(PC_STAC) or missing


def pc_inputs(args: argparse.Namespace) -> dict[str, Any]:
    stac = {"source": PC_STAC, "collections": ["naip"], "bbox": list(args.bbox), "datetime": "2020-01-01/2020-12-31",
            "asset": "image", "sign": "planetary-computer", "max_items": args.items}
    return {"stac": stac, "band_names": BAND_NAMES, "alpha": "none"}


def pc_secrets() -> dict[str, bytes]:
    import planetary_computer

    token = planetary_computer.sas.get_token(*PC_BLOB).token
    if (match := re.search(r"sig=([^&]+)", token)) is None:
        raise RuntimeError("the token service's answer has no sig=")
    sig = match.group(1)
    return {"the SAS token": token.encode(), "its signature": sig.encode(), "its decoded signature": unquote(sig).encode()}


def aws_probe(args: argparse.Namespace) -> str | None:
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE") or (Path.home() / ".aws" / "credentials").is_file()):
        return "no AWS credentials"
    missing = None if args.aws_keys or find_spec("boto3") else f"no boto3 to list the keys: pass --aws-keys s3://{AWS_BUCKET}/... (repeatable)"
    return reach(f"https://{AWS_BUCKET}.s3.{AWS_REGION}.amazonaws.com") or missing


def aws_inputs(args: argparse.Namespace) -> dict[str, Any]:
    return {"paths": args.aws_keys or list_keys(args.items), "band_names": BAND_NAMES, "alpha": "none", "remote": {"request_payer": "requester", "region": AWS_REGION}}


def list_keys(count: int) -> list[str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        page = boto3.client("s3", region_name=AWS_REGION).list_objects_v2(Bucket=AWS_BUCKET, Prefix=AWS_PREFIX, RequestPayer="requester")
    except (BotoCoreError, ClientError) as exc:
        raise RuntimeError(f"cannot list s3://{AWS_BUCKET}/{AWS_PREFIX}: {exc}") from None
    keys = [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".tif")][:count]
    if not keys:
        raise RuntimeError(f"no .tif under s3://{AWS_BUCKET}/{AWS_PREFIX}")
    return [f"s3://{AWS_BUCKET}/{key}" for key in keys]


def aws_secrets() -> dict[str, bytes]:
    names = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return {f"${name}": os.environ[name].encode() for name in names if os.environ.get(name)}


CHECKS = {
    "pc": Check("planetary-computer", "pc", pc_probe, pc_inputs, pc_secrets),
    "aws": Check("aws naip-analytic", "aws", aws_probe, aws_inputs, aws_secrets),
}


def leaks(texts: dict[str, bytes], secrets: dict[str, bytes]) -> list[str]:
    """'<where> holds <what>' for every text with a part of a signed URL; never the value itself."""
    patterns = {**LEAKS, **{what: re.escape(value) for what, value in secrets.items()}}
    return [f"{where} holds {what}" for where, text in texts.items() for what, pattern in patterns.items() if re.search(pattern, text)]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, hidden ones included, by its path relative to it."""
    files = (Path(root) / name for root, _, names in os.walk(folder) for name in names)
    return {str(path.relative_to(folder)): path.read_bytes() for path in files}


def problems(proc: subprocess.CompletedProcess[bytes], folder: Path, secrets: dict[str, bytes]) -> list[str]:
    found = leaks({"stdout": proc.stdout, "stderr": proc.stderr, **folder_bytes(folder)}, secrets)
    if proc.returncode != 0:  # the run's last word, unless it would show a secret here
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        found.append(f"exit code {proc.returncode} ({'its last line withheld' if leaks({'': proc.stderr}, secrets) else last[0]})")
    cog, report = folder / "labels.tif", folder / "labels.report.json"
    if not cog.is_file():
        found.append(f"no {cog.name}")
    elif not (validation := cog_validate(str(cog), quiet=True))[0]:
        found.append(f"{cog.name} is not a valid COG: {'; '.join(validation[1])}")
    if not report.is_file():
        found.append(f"no {report.name}")
    return found


def summary(folder: Path) -> str:
    totals = json.loads((folder / "labels.report.json").read_text())["totals"]
    source = json.loads((folder / "labels.model.json").read_text()).get("input", {})
    items = source.get("items") or len(source.get("paths") or ())
    return f"{items} item{'s' * (items != 1)}, {(totals['valid_pixels'] + totals['nodata_pixels']) / 1e6:.1f} MP"


def run(check: Check, args: argparse.Namespace, out: Path) -> str:
    folder = out / check.folder
    try:  # the bucket listing or the token service (requests' errors are OSErrors)
        config = {"input": check.inputs(args), "output": {"path": str(folder / "labels.tif"), "overwrite": True}, **REST}
        secrets = check.secrets()
    except (OSError, RuntimeError) as exc:
        return f"FAILED: before the run: {type(exc).__name__}: {exc}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(folder / "run.yaml")], check=False, cwd=REPO, capture_output=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"FAILED: no result after {RUN_TIMEOUT_S} s"
    seconds = time.monotonic() - start
    if found := problems(proc, folder, secrets):
        return "FAILED: " + "; ".join(found)
    return f"PASSED in {seconds:.0f} s ({summary(folder)})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="output folder (default: a new temporary folder, kept)")
    parser.add_argument("--only", choices=sorted(CHECKS), help="run one check only")
    parser.add_argument("--aws-keys", action="append", metavar="S3_URL", help=f"an s3://{AWS_BUCKET}/... COG to read (repeatable); skips the listing")
    parser.add_argument("--items", type=int, default=4, help="items or keys per check (default: 4)")
    parser.add_argument("--bbox", type=float, nargs=4, default=BBOX, metavar=("W", "S", "E", "N"), help="Planetary Computer search area in degrees")
    args = parser.parse_args(argv)
    west, south, east, north = args.bbox
    if args.items < 1:
        parser.error("--items must be at least 1")
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        parser.error("--bbox must be W S E N with W < E in -180..180 and S < N in -90..90")
    if any(not key.startswith("s3://") for key in args.aws_keys or ()):
        parser.error("--aws-keys takes s3:// URLs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = [CHECKS[args.only]] if args.only else list(CHECKS.values())
    reasons = {check.name: check.probe(args) for check in checks}
    skipped = [name for name, reason in reasons.items() if reason]
    for name in skipped:
        print(f"{name}: SKIPPED ({reasons[name]})")
    runnable = [check for check in checks if not reasons[check.name]]
    if not runnable:
        print(f"live check: nothing was run (skipped: {', '.join(skipped)})")
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="live-check-"))
    print(f"output folder: {out}", flush=True)
    passed, failed = [], []
    for check in runnable:
        result = run(check, args, out)
        print(f"{check.name}: {result}", flush=True)
        (failed if result.startswith("FAILED") else passed).append(check.name)
    print(f"live check: passed: {', '.join(passed) or 'none'}; failed: {', '.join(failed) or 'none'}; skipped: {', '.join(skipped) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
