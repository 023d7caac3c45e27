"""Registered assets, file objects and compute policies (host.assets, host.files), on a real SQLite store."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from c2d.compute.v1 import compute_pb2
from host import assets as rules
from host.assets import AssetRegistry, algorithm_container, service_files
from host.errors import RequestError
from host.files import FileRef, parse_files, resolve_local, to_file_source
from host.store import models
from host.store.db import open_database

SECRET_URL = "https://secret-bucket.example.com/private/data.csv?token=SECRET"
DATASET = compute_pb2.AssetService.KIND_DATASET
ALGORITHM = compute_pb2.AssetService.KIND_ALGORITHM
DIGEST = "sha256:" + "ab" * 32
CONSUMER = "0x" + "12" * 20
OTHER = "0x" + "34" * 20
SETTINGS = {"ipfs_gateway": "https://ipfs.example/", "arweave_gateway": "https://ar.example", "data_root": ""}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[None]:
    database = open_database(tmp_path / "node")
    yield
    database.close()


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "outside.txt").write_text("secret outside")
    return root


@pytest.fixture
def registry(db: None, data_root: Path) -> AssetRegistry:
    return AssetRegistry(data_root=data_root)


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """Runs ``call`` expecting a RequestError; returns its code and message."""
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value.code, caught.value.message


def dataset(did: str = "did:op:data", **policy: Any) -> compute_pb2.Asset:
    asset = compute_pb2.Asset(did=did, name="a dataset")
    service = asset.services.add(service_id="compute", kind=DATASET)
    json_format.ParseDict({"files": [{"type": "url", "url": SECRET_URL}]}, service.files)
    service.policy.CopyFrom(compute_pb2.ComputePolicy(**policy))
    return asset


def algorithm_asset(did: str = "did:op:algo", checksum: str = DIGEST) -> compute_pb2.Asset:
    asset = compute_pb2.Asset(did=did)
    service = asset.services.add(service_id="algo", kind=ALGORITHM)
    service.container.CopyFrom(
        compute_pb2.AlgorithmContainer(
            image="python", tag="3.11", checksum=checksum, entrypoint="python $ALGO"
        )
    )
    json_format.ParseDict({"type": "data", "data": "print(1)"}, service.files)
    return asset


# -- files -------------------------------------------------------------------------------------


def test_parse_files_accepts_every_shape() -> None:
    one = {"type": "url", "url": "https://example.com/x", "method": "post", "headers": {"X-A": "b"}}
    assert parse_files(one, allow_local=False)[0].method == "POST"
    assert len(parse_files([one, one], allow_local=False)) == 2
    assert len(parse_files({"files": [one], "datatokenAddress": "0x"}, allow_local=False)) == 1
    struct = json_format.ParseDict({"files": [one]}, compute_pb2.StageInput().files)
    assert parse_files(struct, allow_local=False)[0].headers == {"X-A": "b"}


def test_parse_files_kinds() -> None:
    refs = parse_files(
        [
            {"type": "data", "data": base64.b64encode(b"\x00\x01").decode(), "encoding": "base64"},
            {"type": "data", "data": "text", "name": "in.txt", "checksum": "SHA256:" + "AB" * 32},
            {"type": "ipfs", "hash": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"},
            {"type": "arweave", "transactionId": "a" * 43},
            {"type": "local", "path": "sub/data.csv"},
        ],
        allow_local=True,
    )
    assert [r.type for r in refs] == ["data", "data", "ipfs", "arweave", "local"]
    assert refs[0].data == b"\x00\x01"
    assert refs[1].name == "in.txt" and refs[1].checksum == "sha256:" + "ab" * 32


def test_file_ref_repr_hides_location() -> None:
    ref = parse_files({"type": "url", "url": SECRET_URL}, allow_local=False)[0]
    assert "SECRET" not in repr(ref)


BAD_FILES = [
    ({"type": "url", "url": "ftp://SECRET.example/x"}, "unsupported URL scheme 'ftp'"),
    ({"type": "url", "url": "https:///SECRET"}, "without a host"),
    ({"type": "url"}, "no url"),
    ({"type": "url", "url": "https://SECRET.example/a b"}, "spaces"),
    ({"type": "url", "url": "https://SECRET.example/", "method": "DELETE"}, "method 'DELETE'"),
    ({"type": "url", "url": "https://SECRET.example/", "headers": {"bad name": "SECRET"}}, "header 0"),
    ({"type": "url", "url": "https://SECRET.example/", "headers": {"X": "SECRET\r\nY: z"}}, "single-line"),
    ({"type": "url", "url": "https://SECRET.example/", "headers": ["SECRET"]}, "headers"),
    ({"type": "data", "data": 5}, "no data string"),
    ({"type": "data", "data": "not base64!", "encoding": "base64"}, "not valid base64"),
    ({"type": "data", "data": "x", "encoding": "rot13"}, "encoding 'rot13'"),
    ({"type": "data", "data": "x" * (1024 * 1024 + 1)}, "inline data"),
    ({"type": "local", "path": "SECRET.csv"}, "only allowed in assets the node operator registers"),
    ({"type": "ipfs", "hash": "SECRET/../x"}, "IPFS hash"),
    ({"type": "arweave", "transactionId": "SECRET"}, "Arweave transactionId"),
    ({"type": "s3", "url": "s3://SECRET"}, "type 's3'"),
    ({"url": "https://SECRET.example/"}, "type missing"),
    ({"type": "url", "url": "https://SECRET.example/", "name": "../SECRET"}, "plain file name"),
    ({"type": "url", "url": "https://SECRET.example/", "checksum": "md5:SECRET"}, "sha256:<64 hex digits>"),
    (["SECRET"], "is not an object"),
    ([], "no files"),
    ({}, "no files"),
    ({"files": []}, "no files"),
    ("SECRET", "expected a file"),
]


@pytest.mark.parametrize(("obj", "fragment"), BAD_FILES)
def test_parse_files_refuses_without_echoing_locations(obj: Any, fragment: str) -> None:
    code, message = code_of(lambda: parse_files(obj, allow_local=False, label="input 0"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in message and message.startswith("input 0")
    assert "SECRET" not in message


def test_parse_files_names_the_file_position() -> None:
    files = [{"type": "data", "data": "x"}, {"type": "url", "url": "ftp://host/x"}]
    _, message = code_of(lambda: parse_files(files, allow_local=False, label="input 0"))
    assert message == "input 0: file 1 has an unsupported URL scheme 'ftp'; expected http or https"


@pytest.mark.parametrize("path", ["/etc/SECRET", "../SECRET", "sub/../../SECRET", "\\SECRET", "a\x00SECRET"])
def test_parse_files_refuses_local_paths_out_of_the_root(path: str) -> None:
    code, message = code_of(lambda: parse_files({"type": "local", "path": path}, allow_local=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SECRET" not in message


def test_to_file_source_url_keeps_method_and_headers() -> None:
    ref = parse_files(
        {"type": "url", "url": SECRET_URL, "method": "POST", "headers": {"A": "b"}}, allow_local=False
    )
    source = to_file_source(ref[0], SETTINGS)
    assert (source.type, source.url, source.method, dict(source.headers)) == (
        "url",
        SECRET_URL,
        "POST",
        {"A": "b"},
    )


def test_to_file_source_resolves_gateways() -> None:
    ipfs = FileRef(type="ipfs", location="QmCid1234567")
    arweave = FileRef(type="arweave", location="t" * 43, name="x.bin")
    assert to_file_source(ipfs, SETTINGS).url == "https://ipfs.example/ipfs/QmCid1234567"
    source = to_file_source(arweave, SETTINGS)
    assert (source.type, source.url, source.name, source.method) == (
        "url",
        f"https://ar.example/{'t' * 43}",
        "x.bin",
        "GET",
    )


def test_to_file_source_inline_data() -> None:
    source = to_file_source(FileRef(type="data", data=b"hello", checksum="sha256:" + "0" * 64), SETTINGS)
    assert (source.type, source.data, source.size, source.checksum) == (
        "data",
        b"hello",
        5,
        "sha256:" + "0" * 64,
    )


def test_to_file_source_local_is_a_node_token(data_root: Path) -> None:
    settings = {**SETTINGS, "data_root": str(data_root)}
    ref = FileRef(type="local", location="sub/data.csv")
    source = to_file_source(ref, settings, "asset:did:svc:0")
    assert (source.type, source.url, source.size) == ("node", "asset:did:svc:0", 8)
    assert "data.csv" not in str(source)
    assert to_file_source(ref, settings, lambda r: f"token-{r.type}").url == "token-local"


def test_to_file_source_local_needs_a_data_root() -> None:
    code, message = code_of(lambda: to_file_source(FileRef(type="local", location="x"), SETTINGS, "t"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == "this node has no assets.data_root for local files"


def test_resolve_local_finds_a_file_inside(data_root: Path) -> None:
    assert resolve_local(data_root, "sub/data.csv") == (data_root / "sub" / "data.csv").resolve()
    assert resolve_local(str(data_root), "sub/./data.csv").read_text() == "a,b\n1,2\n"


def test_resolve_local_refuses_escapes(data_root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside.txt", data_root / "link.txt")
    os.symlink(tmp_path, data_root / "dirlink")
    for path in ["../outside.txt", str(tmp_path / "outside.txt"), "link.txt", "dirlink/outside.txt"]:
        code, message = code_of(lambda p=path: resolve_local(data_root, p))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, path
        assert "outside" not in message and str(tmp_path) not in message


def test_resolve_local_refuses_what_is_not_a_regular_file(data_root: Path) -> None:
    os.symlink("loop", data_root / "loop")
    for path in ["sub", "missing.csv", "loop", "."]:
        code, message = code_of(lambda p=path: resolve_local(data_root, p))
        assert code == grpc.StatusCode.NOT_FOUND, path
        assert path not in message or path == "."


def test_resolve_local_needs_a_usable_data_root(tmp_path: Path) -> None:
    assert code_of(lambda: resolve_local("", "x"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: resolve_local(None, "x"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    code, message = code_of(lambda: resolve_local(tmp_path / "nope", "x"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "nope" not in message


# -- registration ------------------------------------------------------------------------------


def test_register_get_and_normalize(registry: AssetRegistry) -> None:
    asset = dataset(
        allowed_consumers=[CONSUMER.upper().replace("0X", "0x")], trusted_image_digests=[DIGEST.upper()]
    )
    registry.register(asset)
    stored = registry.get("did:op:data")
    policy = stored.services[0].policy
    assert list(policy.allowed_consumers) == [CONSUMER]
    assert list(policy.trusted_image_digests) == [DIGEST.replace("SHA256", "sha256")]
    assert json_format.MessageToDict(stored.services[0].files) == {
        "files": [{"type": "url", "url": SECRET_URL}]
    }


def test_list_never_contains_files(registry: AssetRegistry) -> None:
    registry.register(dataset())
    registry.register(algorithm_asset())
    listed = registry.list()
    assert [a.did for a in listed] == ["did:op:algo", "did:op:data"]
    assert all(not s.HasField("files") for a in listed for s in a.services)
    assert "SECRET" not in str(listed) and "print(1)" not in str(listed)
    assert listed[0].services[0].container.image == "python"


def test_register_twice_needs_replace(registry: AssetRegistry) -> None:
    registry.register(dataset())
    code, message = code_of(lambda: registry.register(dataset()))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "replace" in message
    renamed = dataset()
    renamed.name = "renamed"
    registry.register(renamed, replace=True)
    assert registry.get("did:op:data").name == "renamed"
    assert models.Asset.select().count() == 1


def test_registering_an_algorithm_of_image_alone(registry: AssetRegistry) -> None:
    asset = algorithm_asset()
    asset.services[0].ClearField("files")
    registry.register(asset)
    _, service = registry.service("did:op:algo", "algo", ALGORITHM)
    assert service_files(service) == []


def test_registering_an_algorithm_built_from_a_dockerfile(registry: AssetRegistry) -> None:
    """The operator's Dockerfile and build files are kept, and are the container a stage naming it runs."""
    asset = algorithm_asset()
    asset.services[0].container.CopyFrom(
        compute_pb2.AlgorithmContainer(
            dockerfile="FROM python:3.11\nCOPY main.py /opt/\n",
            additional_files={"main.py": b"print(1)\n"},
            entrypoint="python /opt/main.py",
        )
    )
    registry.register(asset)
    _, service = registry.service("did:op:algo", "algo", ALGORITHM)
    assert service.container.dockerfile.startswith("FROM python:3.11")
    assert dict(service.container.additional_files) == {"main.py": b"print(1)\n"}
    asked = compute_pb2.Algorithm(did="did:op:algo", container=compute_pb2.AlgorithmContainer(image="x"))
    assert algorithm_container(asked, service) == service.container


def test_register_local_files_inside_the_root(registry: AssetRegistry) -> None:
    asset = dataset()
    json_format.ParseDict({"type": "local", "path": "sub/data.csv"}, asset.services[0].files)
    registry.register(asset)
    refs = service_files(registry.get("did:op:data").services[0])
    assert (refs[0].type, refs[0].location) == ("local", "sub/data.csv")


def _set_files(files: Any) -> Callable[[compute_pb2.Asset], None]:
    def mutate(asset: compute_pb2.Asset) -> None:
        asset.services[0].files.Clear()
        json_format.ParseDict(files, asset.services[0].files)

    return mutate


def _policy(**fields: Any) -> Callable[[compute_pb2.Asset], None]:
    def mutate(asset: compute_pb2.Asset) -> None:
        asset.services[0].policy.CopyFrom(compute_pb2.ComputePolicy(**fields))

    return mutate


def _algorithm_container(**fields: Any) -> Callable[[compute_pb2.Asset], None]:
    def mutate(asset: compute_pb2.Asset) -> None:
        asset.services[0].kind = ALGORITHM
        asset.services[0].container.CopyFrom(compute_pb2.AlgorithmContainer(**fields))

    return mutate


INVALID = grpc.StatusCode.INVALID_ARGUMENT
BAD_ASSETS: list[tuple[str, Callable[[compute_pb2.Asset], None], grpc.StatusCode, str]] = [
    ("empty did", lambda a: setattr(a, "did", ""), INVALID, "asset did is empty"),
    ("spaced did", lambda a: setattr(a, "did", " did:x"), INVALID, "surrounding spaces"),
    ("no services", lambda a: a.ClearField("services"), INVALID, "has no services"),
    ("empty service id", lambda a: setattr(a.services[0], "service_id", ""), INVALID, "service_id is empty"),
    ("duplicate service id", lambda a: a.services.add().CopyFrom(a.services[0]), INVALID, "used twice"),
    ("kind unset", lambda a: setattr(a.services[0], "kind", 0), INVALID, "kind must be dataset or algorithm"),
    (
        "kind unknown",
        lambda a: setattr(a.services[0], "kind", 9),
        INVALID,
        "kind must be dataset or algorithm",
    ),
    ("dataset without files", lambda a: a.services[0].ClearField("files"), INVALID, "needs files"),
    ("dataset empty files", _set_files({"files": []}), INVALID, "no files"),
    ("dataset bad url", _set_files({"type": "url", "url": "ftp://SECRET/x"}), INVALID, "scheme 'ftp'"),
    (
        "dataset with container",
        lambda a: a.services[0].container.CopyFrom(compute_pb2.AlgorithmContainer(image="x", tag="1")),
        INVALID,
        "has no container",
    ),
    (
        "local escapes",
        _set_files({"type": "local", "path": "../outside.txt"}),
        INVALID,
        "leaves the data root",
    ),
    (
        "local missing",
        _set_files({"type": "local", "path": "SECRET.csv"}),
        grpc.StatusCode.NOT_FOUND,
        "not a regular",
    ),
    (
        "algorithm without container or files",
        lambda a: (a.services[0].ClearField("files"), setattr(a.services[0], "kind", ALGORITHM)),
        INVALID,
        "needs a container or files",
    ),
    ("container without image", _algorithm_container(tag="1"), INVALID, "has no image"),
    ("image without tag", _algorithm_container(image="python"), INVALID, "needs a tag or a digest"),
    (
        "image with tag inside",
        _algorithm_container(image="python:3.11", tag="3"),
        INVALID,
        "valid image name",
    ),
    ("bad tag", _algorithm_container(image="python", tag="-bad"), INVALID, "not a valid image tag"),
    ("bad checksum", _algorithm_container(image="python", checksum="sha256:12"), INVALID, "image digest"),
    (
        "dockerfile and image",
        _algorithm_container(image="python", tag="3", dockerfile="FROM python:3\n", entrypoint="sh $ALGO"),
        INVALID,
        "both an image and a dockerfile",
    ),
    (
        "files without dockerfile",
        _algorithm_container(additional_files={"a.txt": b"x"}, entrypoint="sh $ALGO"),
        INVALID,
        "additional_files but no dockerfile",
    ),
    ("dockerfile without entrypoint", _algorithm_container(dockerfile="FROM x\n"), INVALID, "no entrypoint"),
    (
        "dockerfile too big",
        _algorithm_container(dockerfile="#" * (64 * 1024 + 1), entrypoint="sh $ALGO"),
        INVALID,
        "at most 65536 are allowed",
    ),
    (
        "build file outside the context",
        _algorithm_container(dockerfile="FROM x\n", entrypoint="sh $ALGO", additional_files={"../up": b"x"}),
        INVALID,
        "not a plain relative path",
    ),
    (
        "build files too big",
        _algorithm_container(
            dockerfile="FROM x\n", entrypoint="sh $ALGO", additional_files={"big": b"x" * (1024 * 1024 + 1)}
        ),
        INVALID,
        "at most 1048576 are allowed",
    ),
    (
        "bad consumer",
        _policy(allowed_consumers=["0x1234"]),
        INVALID,
        "allowed_consumers[0] is not an address",
    ),
    ("bad digest", _policy(trusted_image_digests=["md5:ab"]), INVALID, "trusted_image_digests[0]"),
    (
        "empty trusted did",
        _policy(trusted_algorithm_dids=[""]),
        INVALID,
        "trusted_algorithm_dids[0] is empty",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "code", "fragment"), [c[1:] for c in BAD_ASSETS], ids=[c[0] for c in BAD_ASSETS]
)
def test_register_refuses_and_stores_nothing(
    registry: AssetRegistry, mutate: Callable[[compute_pb2.Asset], None], code: grpc.StatusCode, fragment: str
) -> None:
    asset = dataset()
    mutate(asset)
    got, message = code_of(lambda: registry.register(asset))
    assert (got, fragment in message) == (code, True), message
    assert "SECRET" not in message and "outside" not in message
    assert models.Asset.select().count() == 0


def test_failed_replace_keeps_the_old_asset(registry: AssetRegistry) -> None:
    registry.register(dataset())
    broken = dataset()
    broken.services[0].ClearField("files")
    assert code_of(lambda: registry.register(broken, replace=True))[0] == INVALID
    assert registry.get("did:op:data").services[0].HasField("files")


def test_local_files_need_a_data_root(db: None) -> None:
    asset = dataset()
    _set_files({"type": "local", "path": "x.csv"})(asset)
    code, message = code_of(lambda: AssetRegistry().register(asset))
    assert (code, message) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "this node has no assets.data_root for local files",
    )
    assert models.Asset.select().count() == 0


def test_valid_image_references(registry: AssetRegistry) -> None:
    for image in ["python", "library/python", "ghcr.io/org/algo", "registry.local:5000/a/b-c", "a__b"]:
        asset = algorithm_asset(did=f"did:{image}")
        asset.services[0].container.image = image
        registry.register(asset)
    assert len(registry.list()) == 5


# -- lookups -----------------------------------------------------------------------------------


def test_remove_and_missing_assets(registry: AssetRegistry) -> None:
    registry.register(dataset())
    registry.remove("did:op:data")
    assert code_of(lambda: registry.remove("did:op:data"))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: registry.get("did:op:data"))[0] == grpc.StatusCode.NOT_FOUND
    assert registry.list() == []


def test_service_lookup_messages(registry: AssetRegistry) -> None:
    registry.register(dataset())
    asset, service = registry.service("did:op:data", "compute", DATASET)
    assert (asset.did, service.service_id) == ("did:op:data", "compute")
    cases = [
        (("did:op:none", "compute", DATASET), "no asset with did 'did:op:none'"),
        (("did:op:data", "other", DATASET), "has no dataset service 'other'"),
        (("did:op:data", "compute", ALGORITHM), "is dataset, not algorithm"),
    ]
    for args, fragment in cases:
        code, message = code_of(lambda a=args: registry.service(*a))
        assert code == grpc.StatusCode.NOT_FOUND and fragment in message, message


# -- policy ------------------------------------------------------------------------------------


def _check(dataset_asset: compute_pb2.Asset, algorithm: compute_pb2.Algorithm, **kw: Any) -> None:
    algo_service = kw.get("algorithm_service")
    rules.check_compute(
        dataset_asset, dataset_asset.services[0], algorithm, algo_service, kw.get("consumer", CONSUMER)
    )


def _denied(dataset_asset: compute_pb2.Asset, algorithm: compute_pb2.Algorithm, **kw: Any) -> str:
    code, message = code_of(lambda: _check(dataset_asset, algorithm, **kw))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "SECRET" not in message
    return message


def _registered(checksum: str = DIGEST) -> tuple[compute_pb2.Algorithm, compute_pb2.AssetService]:
    service = algorithm_asset(checksum=checksum).services[0]
    return compute_pb2.Algorithm(did="did:op:algo", service_id="algo"), service


def test_consumers_allow_list() -> None:
    algorithm, service = _registered()
    open_to_one = dataset(allowed_consumers=[CONSUMER], allow_any_algorithm=True)
    _check(open_to_one, algorithm, algorithm_service=service, consumer=CONSUMER.upper().replace("0X", "0x"))
    message = _denied(open_to_one, algorithm, algorithm_service=service, consumer=OTHER)
    assert message == f"dataset did:op:data service compute is not available to consumer {OTHER}"
    _check(dataset(allow_any_algorithm=True), algorithm, algorithm_service=service, consumer=OTHER)


def test_algorithm_consumers_allow_list() -> None:
    algorithm, service = _registered()
    service.policy.allowed_consumers.append(CONSUMER)
    _check(dataset(allow_any_algorithm=True), algorithm, algorithm_service=service)
    message = _denied(dataset(allow_any_algorithm=True), algorithm, algorithm_service=service, consumer=OTHER)
    assert message.startswith("algorithm did:op:algo service algo")


def test_raw_code_needs_allow_raw_code() -> None:
    raw = compute_pb2.Algorithm(
        rawcode="print(1)", container=compute_pb2.AlgorithmContainer(image="p", tag="1")
    )
    assert "does not allow raw algorithms" in _denied(dataset(allow_any_algorithm=True), raw)
    _check(dataset(allow_raw_code=True), raw)


def test_consumer_files_algorithm_is_raw_code() -> None:
    algorithm = compute_pb2.Algorithm(container=compute_pb2.AlgorithmContainer(image="p", tag="1"))
    json_format.ParseDict({"type": "url", "url": SECRET_URL}, algorithm.files)
    assert "raw algorithms" in _denied(
        dataset(allow_any_algorithm=True, trusted_image_digests=[DIGEST]), algorithm
    )
    _check(dataset(allow_raw_code=True), algorithm)


def test_unregistered_image_alone_is_trusted_by_digest() -> None:
    image = compute_pb2.Algorithm(container=compute_pb2.AlgorithmContainer(image="p", checksum=DIGEST))
    _check(dataset(trusted_image_digests=[DIGEST]), image)
    _denied(dataset(trusted_image_digests=["sha256:" + "cd" * 32]), image)


def test_registered_algorithm_trust() -> None:
    algorithm, service = _registered()
    _check(dataset(trusted_algorithm_dids=["did:op:algo"]), algorithm, algorithm_service=service)
    _check(dataset(trusted_image_digests=[DIGEST]), algorithm, algorithm_service=service)
    _check(dataset(allow_any_algorithm=True), algorithm, algorithm_service=service)
    message = _denied(dataset(trusted_algorithm_dids=["did:op:other"]), algorithm, algorithm_service=service)
    assert (
        message
        == "dataset did:op:data service compute does not trust algorithm did:op:algo (by did or by image digest)"
    )
    _denied(dataset(), algorithm, algorithm_service=service)


def test_digest_trust_uses_the_registered_container() -> None:
    algorithm, service = _registered(checksum="sha256:" + "ee" * 32)
    algorithm.container.CopyFrom(compute_pb2.AlgorithmContainer(image="evil", tag="1", checksum=DIGEST))
    _denied(dataset(trusted_image_digests=[DIGEST]), algorithm, algorithm_service=service)
    assert rules.algorithm_container(algorithm, service).image == "python"
    assert rules.algorithm_container(algorithm, None).image == "evil"


def test_registered_algorithm_with_rawcode_needs_both() -> None:
    algorithm, service = _registered()
    algorithm.rawcode = "print(2)"
    _denied(dataset(allow_any_algorithm=True), algorithm, algorithm_service=service)
    _check(dataset(allow_any_algorithm=True, allow_raw_code=True), algorithm, algorithm_service=service)


def test_registry_exposes_the_policy_checks(registry: AssetRegistry) -> None:
    algorithm, service = _registered()
    permissive = dataset(allow_any_algorithm=True)
    registry.check_compute(permissive, permissive.services[0], algorithm, service, CONSUMER)
    assert registry.network_allowed([])


def test_network_allowed_only_when_every_dataset_allows() -> None:
    yes, no = dataset(allow_network=True).services[0], dataset().services[0]
    assert rules.network_allowed([yes, yes])
    assert not rules.network_allowed([yes, no])
    assert rules.network_allowed([])
