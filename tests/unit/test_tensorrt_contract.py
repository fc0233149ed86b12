"""The Jetson code paths against a contract double of the TensorRT 10.3 Python API (issue 15).

No machine here runs TensorRT. The double below implements only the calls edgevcf makes, and
behaves as TensorRT documents them; each behaviour cites its source. It lets
``build_engine``, the build plans and ``TensorRTBackend.run`` run in CI. It never counts as a
TensorRT result: the real build and run keep their ``requires_tensorrt`` tests, and reports and
the README keep saying that the engine was not built here.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.machinery
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevcf.errors import BackendUnavailableError, BundleError, CompileError, ConfigError
from edgevcf.profiles import load_profile
from edgevcf.targets.jetson import BUILD_SCRIPT, ENGINE, TRTEXEC, build_engine, build_plan

STRONGLY_TYPED_BIT = 1  # NvInfer.h: NetworkDefinitionCreationFlag::kSTRONGLY_TYPED = 1


class _Enum:
    def __init__(self, **members: int) -> None:
        for k, v in members.items():
            setattr(self, k, v)


@dataclasses.dataclass
class _Network:
    flags: int


class _Cache:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def serialize(self) -> bytes:
        return b"TRTCACHE-this-device"


class _Config:
    def __init__(self, log: list[str]) -> None:
        self.flags: set[int] = set()
        self.default_device_type = 0
        self.DLA_core = -1
        self.builder_optimization_level = 3
        self.cache: _Cache | None = None
        self.log = log

    def set_memory_pool_limit(self, pool: int, size: int) -> None:
        self.workspace = size

    def set_flag(self, flag: int) -> None:
        self.flags.add(flag)

    def create_timing_cache(self, blob: bytes) -> _Cache:
        return _Cache(blob)

    def set_timing_cache(self, cache: _Cache, ignore_mismatch: bool) -> bool:
        # IBuilderConfig::setTimingCache: returns false when the cache does not match this
        # device / TensorRT version and ignore_mismatch is false (NvInfer.h, TensorRT 10.3)
        if (
            cache.blob
            and not cache.blob.startswith(b"TRTCACHE-this-device")
            and not ignore_mismatch
        ):
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> _Cache:
        assert self.cache is not None
        return self.cache


def fake_tensorrt(version: str = "10.3.0.30", *, shuffle: bool = True) -> types.ModuleType:
    """The double: ``tensorrt`` as its 10.3 Python bindings behave (only what we call)."""
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = version
    trt.built: list[dict[str, Any]] = []  # type: ignore[misc]
    trt.log: list[str] = []  # type: ignore[misc]
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
    if not version.startswith("8."):
        # TensorRT 8.6 has no STRONGLY_TYPED flag (added in 9.x/10.0: NvInfer.h history)
        trt.NetworkDefinitionCreationFlag = _Enum(STRONGLY_TYPED=STRONGLY_TYPED_BIT)
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    trt.BuilderFlag = _Enum(FP16=0, GPU_FALLBACK=5)
    trt.DeviceType = _Enum(GPU=0, DLA=1)
    trt.TensorIOMode = _Enum(NONE=0, INPUT=1, OUTPUT=2)
    trt.DataType = _Enum(FLOAT=0, HALF=1, INT8=2)

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int) -> _Network:
            return _Network(flags)

        def create_builder_config(self) -> _Config:
            return _Config(trt.log)

        def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
            strongly = bool(network.flags & (1 << STRONGLY_TYPED_BIT))
            # Strongly typed networks take precisions from their types: BuilderFlag::kFP16 is an
            # error ("Strongly typed networks do not support precision flags"; TensorRT#4253)
            if strongly and trt.BuilderFlag.FP16 in config.flags:
                trt.log.append("error: FP16 flag on a strongly typed network")
                return None
            # DLA runs FP16/implicit INT8 only: a Q/DQ network cannot go there (TensorRT#2222)
            if strongly and config.default_device_type == trt.DeviceType.DLA:
                trt.log.append("error: strongly typed network on a DLA")
                return None
            built = {"strongly_typed": strongly, "flags": sorted(config.flags)}
            trt.built.append(
                {**built, "device": config.default_device_type, "dla": config.DLA_core}
            )
            return b"ENGINE" + json.dumps(trt.built[-1]).encode()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: _Network, logger: Any) -> None:
            pass

        def parse(self, data: bytes) -> bool:
            return data[:2] != b"\x00\x00"  # a real ONNX protobuf is accepted

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}
            self.batch = 1

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            # IExecutionContext::setInputShape returns false for a shape outside the profile
            if tuple(shape[1:]) != (3, 8, 8) or shape[0] != 1:
                return False
            self.batch = shape[0]
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (self.batch, 1)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def execute_async_v3(self, stream: int) -> bool:
            n = self.batch * 3 * 8 * 8
            x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(self.addresses["input"]))
            y = np.ctypeslib.as_array((ctypes.c_float * self.batch).from_address(
                self.addresses["logits"]))  # fmt: skip
            y[:] = x.reshape(self.batch, -1).mean(axis=1)  # the "model": mean of the input
            return True

    class Engine:
        # ICudaEngine::getIOTensorName: no order is documented; the samples sort by mode
        names = ["logits", "input"] if shuffle else ["input", "logits"]
        num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> int:
            return trt.TensorIOMode.INPUT if name == "input" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> int:
            return trt.DataType.FLOAT

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (1, 3, 8, 8) if name == "input" else (1, 1)

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.DLA_core = -1

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            trt.deserialized_on_dla = self.DLA_core
            return Engine() if data.startswith(b"ENGINE") else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def fake_cudart() -> types.ModuleType:
    """cuda-python's runtime bindings: (err, value) tuples, host memory standing in for device."""
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.buffers: dict[int, Any] = {}  # type: ignore[misc]
    rt.mallocs = 0  # type: ignore[attr-defined]
    rt.cudaMemcpyKind = _Enum(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def malloc(n: int) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(n)
        rt.buffers[ctypes.addressof(buf)] = buf
        rt.mallocs += 1
        return 0, ctypes.addressof(buf)

    rt.cudaMalloc = rt.cudaMallocHost = malloc
    rt.cudaFree = rt.cudaFreeHost = lambda addr: (rt.buffers.pop(addr, None) and 0) or (0,)
    rt.cudaMemcpyAsync = lambda dst, src, n, kind, stream: (ctypes.memmove(dst, src, n) and 0,)
    rt.cudaStreamCreate = lambda: (0, 1)
    rt.cudaStreamSynchronize = lambda stream: (0,)
    props = types.SimpleNamespace(major=8, minor=7, name=b"Orin\x00")
    rt.cudaGetDeviceProperties = lambda i: (0, props)
    return rt


@pytest.fixture
def trt(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    fake = fake_tensorrt()
    cuda, bindings, runtime = (types.ModuleType(n) for n in ("cuda", "cuda.bindings", "x"))
    runtime = fake_cudart()
    for m in (cuda, bindings):
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
    bindings.runtime = runtime  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", runtime)
    fake.cudart = runtime
    return fake


def _plan(name: str, folder: Path, **options: Any) -> dict[str, Any]:
    p = load_profile(name)
    if options:
        p = dataclasses.replace(p, options={**p.options, **options})
    (folder / "model.onnx").write_bytes(b"\x08\x07onnx")
    return build_plan(p, "model.onnx", p.quantize.precision)


# ------------------------------------------------------------------ findings 1 and 3: plans
def test_int8_plan_is_strongly_typed_with_no_precision_flag(trt: Any, tmp_path: Path) -> None:
    plan = _plan("jetson-orin-nano", tmp_path)
    assert "--stronglyTyped" in plan["trtexec"] and "--fp16" not in plan["trtexec"]
    facts = build_engine(plan, tmp_path)
    assert trt.built[-1]["strongly_typed"] and trt.BuilderFlag.FP16 not in trt.built[-1]["flags"]
    assert (tmp_path / ENGINE).read_bytes().startswith(b"ENGINE")
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["tensorrt"] == "10.3.0.30" and record["sm"] == "8.7" == facts["sm"]


def test_the_double_rejects_what_tensorrt_rejects(trt: Any, tmp_path: Path) -> None:
    """The old AGX DLA plan (strongly typed + FP16 + DLA) fails in the double as on a device."""
    plan = {**_plan("jetson-orin-nano", tmp_path), "fp16": True}
    with pytest.raises(CompileError, match="failed to build"):
        build_engine(plan, tmp_path)
    assert "FP16 flag on a strongly typed network" in trt.log[-1]


def test_dla_with_int8_is_refused_at_profile_load_and_fp16_on_dla_builds(
    trt: Any, tmp_path: Path
) -> None:
    from edgevcf.profiles import load_profile_file

    text = Path(load_profile("jetson-agx-orin").source).read_text()
    text = text.replace("dla_core = -1", "dla_core = 0")
    (tmp_path / "agx-dla.toml").write_text(text)
    with pytest.raises(ConfigError, match="cannot put explicit Q/DQ INT8 on a DLA"):
        load_profile_file(tmp_path / "agx-dla.toml")
    (tmp_path / "agx-dla-fp16.toml").write_text(
        text.replace('precision = "int8"', 'precision = "fp16"')
    )
    fp16 = load_profile_file(tmp_path / "agx-dla-fp16.toml")
    plan = build_plan(fp16, "model.onnx", "fp16")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07onnx")
    assert "--stronglyTyped" not in plan["trtexec"]
    assert "--fp16" in plan["trtexec"] and "--useDLACore=0" in plan["trtexec"]
    build_engine(plan, tmp_path)
    assert trt.built[-1]["device"] == trt.DeviceType.DLA and trt.built[-1]["dla"] == 0
    assert json.loads((tmp_path / "model.json").read_text())["dla_core"] == 0


def test_tensorrt_8_6_is_refused_with_the_jetpack_it_needs(
    trt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.6.2.3"))
    with pytest.raises(CompileError, match=r"JetPack 6\.1\+ \(TensorRT >= 10\.3\)"):
        build_engine(_plan("jetson-orin-nano", tmp_path), tmp_path)


def test_a_foreign_timing_cache_is_replaced_not_mixed(trt: Any, tmp_path: Path) -> None:
    (tmp_path / "timing.cache").write_bytes(b"TRTCACHE-from-an-x86-workstation")
    build_engine(_plan("jetson-orin-nano", tmp_path), tmp_path)
    assert (tmp_path / "timing.cache").read_bytes() == b"TRTCACHE-this-device"


# ------------------------------------------------------------------ findings 4 and 5: runtime
def _engine(folder: Path, **record: Any) -> Path:
    (folder / ENGINE).write_bytes(b"ENGINE{}")
    facts = {"tensorrt": "10.3.0.30", "sm": "8.7", "dla_core": -1, **record}
    (folder / "model.json").write_text(json.dumps(facts))
    return folder / ENGINE


def test_backend_finds_tensors_by_mode_and_allocates_once(trt: Any, tmp_path: Path) -> None:
    from edgevcf.backends.tensorrt import TensorRTBackend

    backend = TensorRTBackend(_engine(tmp_path))
    assert (backend.input_name, backend.output_name) == ("input", "logits")  # shuffled order
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    for _ in range(3):
        y = backend.run(x)
    np.testing.assert_allclose(y.reshape(-1), [x.mean()], rtol=1e-6)
    assert trt.cudart.mallocs == 4  # 2 device + 2 pinned host buffers, once for three calls
    with pytest.raises(BundleError, match="refused input shape"):
        backend.run(np.zeros((1, 3, 9, 9), np.float32))


def test_backend_refuses_what_it_cannot_run_safely(
    trt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgevcf.backends.tensorrt import TensorRTBackend

    engine = _engine(tmp_path)
    (tmp_path / "model.json").unlink()
    with pytest.raises(BundleError, match="no engine record"):
        TensorRTBackend(engine)
    _engine(tmp_path, model="NVIDIA Jetson AGX Orin Developer Kit")
    monkeypatch.setattr("edgevcf.backends.tensorrt.device_facts",
                        lambda: {"tensorrt": "10.3.0.30", "sm": "8.7",
                                 "model": "NVIDIA Jetson Orin Nano Developer Kit"})  # fmt: skip
    with pytest.raises(BundleError, match="built for another device"):
        TensorRTBackend(engine)  # same SM 8.7, another device
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.6.2.3"))
    with pytest.raises(BackendUnavailableError, match=r"JetPack 6\.1"):
        TensorRTBackend(_engine(tmp_path))


def test_a_dla_engine_is_deserialised_on_its_core(trt: Any, tmp_path: Path) -> None:
    from edgevcf.backends.tensorrt import TensorRTBackend

    TensorRTBackend(_engine(tmp_path, dla_core=1))
    assert trt.deserialized_on_dla == 1


def test_without_cuda_python_the_engine_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgevcf import backends

    monkeypatch.setattr(backends, "available", lambda name: name != "cuda_python")
    assert not backends.runnable("tensorrt")  # falls back to the bundle's ONNX artefact
    assert backends.runnable("onnxruntime")


def test_generated_scripts_are_executable_and_find_trtexec(export_bundle: Any) -> None:
    _, bundle = export_bundle("jetson")
    for name in (TRTEXEC, BUILD_SCRIPT):
        assert (bundle.path / name).stat().st_mode & 0o111, name
    text = (bundle.path / TRTEXEC).read_text()
    assert "/usr/src/tensorrt/bin/trtexec" in text and '"$TRTEXEC" --onnx=' in text


def _copy(bundle: Any, dest: Path) -> Path:
    import shutil

    shutil.copytree(bundle.path, dest)
    return dest


def _exported(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and "device" not in p.parts}  # fmt: skip


def test_edgevcf_build_makes_the_engine_an_artefact_of_the_bundle(
    trt: Any, export_bundle: Any, tmp_path: Path
) -> None:
    from edgevcf.bundle import Bundle
    from edgevcf.targets.jetson import build_bundle_engine

    _, bundle = export_bundle("jetson")
    work = _copy(bundle, tmp_path / "b")
    build_bundle_engine(work)
    built = Bundle.load(work)  # the engine, its record and cache checked as well
    assert built.artifact().name == "engine" and built.artifact().file == f"device/{ENGINE}"
    assert built.artifact().runtime == "tensorrt" and "model" in built.artifacts
    assert built.device is not None and built.device.record["tensorrt"] == "10.3.0.30"
    plan = json.loads((work / "build_plan.json").read_text())
    assert built.device.source == {"file": plan["onnx"],
                                   "sha256": bundle.manifest["files"][plan["onnx"]]}  # fmt: skip
    assert _exported(work) == _exported(bundle.path)  # not one exported byte changed
    assert trt.built[-1]["strongly_typed"]
    with pytest.raises(ConfigError, match="already has an engine"):
        build_bundle_engine(work)
    build_bundle_engine(work, force=True)  # the timing cache of the first build is reused
    assert Bundle.load(work).device is not None


def test_the_trtexec_route_ends_as_edgevcf_build_does(
    trt: Any, export_bundle: Any, tmp_path: Path
) -> None:
    """trtexec.sh leaves device/model.engine and device/timing.cache (the bundle then refuses
    to load); `edgevcf build --adopt` records them: same end state as `edgevcf build`."""
    from edgevcf.bundle import Bundle
    from edgevcf.targets.jetson import build_bundle_engine

    _, bundle = export_bundle("jetson")
    script = (bundle.path / TRTEXEC).read_text()
    assert "mkdir -p device" in script and "--saveEngine=device/model.engine" in script
    assert "--timingCacheFile=device/timing.cache" in script
    assert "edgevcf build --adopt" in script
    work = _copy(bundle, tmp_path / "b")
    (work / "device").mkdir()
    (work / "device" / ENGINE).write_bytes(b"ENGINE{}")  # what trtexec --saveEngine writes
    (work / "device" / "timing.cache").write_bytes(b"TRTCACHE-this-device")
    with pytest.raises(BundleError, match=r"holds no engine record"):
        Bundle.load(work)
    build_bundle_engine(work, adopt=True)
    built = Bundle.load(work)
    assert built.artifact().name == "engine"
    assert set(built.device.record["files"]) == {ENGINE, "timing.cache"}  # type: ignore[union-attr]
    assert built.device.record["built_by"] == "trtexec"  # type: ignore[union-attr]
    empty = _copy(bundle, tmp_path / "c")
    with pytest.raises(ConfigError, match=r"no model\.engine to adopt"):
        build_bundle_engine(empty, adopt=True)
    Bundle.load(empty)  # left as it was


def test_a_device_build_is_bound_to_its_bundle(
    trt: Any, export_bundle: Any, tmp_path: Path
) -> None:
    """An edited engine or record, or an engine built from another model, is refused."""
    from edgevcf.bundle import DEVICE_RECORD, Bundle, write_device_record
    from edgevcf.targets.jetson import build_bundle_engine

    _, bundle = export_bundle("jetson")
    work = _copy(bundle, tmp_path / "b")
    build_bundle_engine(work)
    dev = work / "device"
    good = {p.name: p.read_bytes() for p in dev.iterdir()}

    def restore() -> None:
        for name, data in good.items():
            (dev / name).write_bytes(data)

    (dev / ENGINE).write_bytes(good[ENGINE] + b"\0")
    with pytest.raises(BundleError, match=r"model\.engine changed"):
        Bundle.load(work)
    restore()
    (dev / DEVICE_RECORD).write_bytes(good[DEVICE_RECORD].replace(b'"dla_core": -1',
                                                                  b'"dla_core": 0'))  # fmt: skip
    with pytest.raises(BundleError, match="modified after the build"):
        Bundle.load(work)
    restore()
    (dev / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"unexpected file extra\.bin"):
        Bundle.load(work)
    (dev / "extra.bin").unlink()
    record = json.loads(good[DEVICE_RECORD])
    record = {k: v for k, v in record.items() if k not in ("schema", "files", "checksum")}
    record["source"]["sha256"] = "0" * 64  # resealed, but built from another ONNX
    write_device_record(dev, record)
    with pytest.raises(BundleError, match="built from another"):
        Bundle.load(work)
    restore()
    assert Bundle.load(work).device is not None


def test_a_signed_bundle_keeps_its_signature_through_the_build(
    trt: Any, export_bundle: Any, tmp_path: Path
) -> None:
    """The export's signature stays valid; under a trust list the engine runs only when the
    device that built it signed it, with a key on that list."""
    from edgevcf.bundle import Bundle
    from edgevcf.signing import Trust, new_key, sign_bundle, verify_signature
    from edgevcf.targets.jetson import build_bundle_engine

    site, site_pub, site_id = new_key(tmp_path / "site")
    device, device_pub, device_id = new_key(tmp_path / "device-key")
    _, bundle = export_bundle("jetson")
    work = _copy(bundle, tmp_path / "b")
    sign_bundle(work, site)
    release = Trust.load([site_pub])
    both = Trust.load([site_pub, device_pub])
    build_bundle_engine(work)  # unsigned engine
    assert verify_signature(work, release) == site_id  # the export's signature still holds
    with pytest.raises(BundleError, match=r"device is not signed") as err:
        Bundle.load(work, trust=both)
    assert "--key DEVICE_KEY" in (err.value.hint or "")
    from click.testing import CliRunner

    from edgevcf.cli import cli

    res = CliRunner().invoke(cli, ["sign", str(work / "device"), "--key", str(device)])
    assert res.exit_code == 0, res.output  # the device signs what it built, afterwards
    assert Bundle.load(work, trust=both).device.signer_key_id == device_id  # type: ignore[union-attr]
    res = CliRunner().invoke(cli, ["build", str(work), "--force", "--key", str(device)])
    assert res.exit_code == 0, res.output  # or as it builds
    built = Bundle.load(work, trust=both)
    assert built.signer_key_id == site_id
    res = CliRunner().invoke(cli, ["verify", str(work), "--artifact", "model", "--trust",
                                   str(site_pub), "--trust", str(device_pub)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"signed by trusted key {site_id}" in res.output
    assert f"signed by trusted device key {device_id}" in res.output
    assert built.device is not None and built.device.signer_key_id == device_id
    assert built.artifact().name == "engine"
    with pytest.raises(BundleError, match="not trusted here"):
        Bundle.load(work, trust=release)  # the device's key is not on this list
    with pytest.raises(BundleError, match="revoked"):
        Bundle.load(work, trust=Trust.load([site_pub, device_pub], [device_id]))
    (work / "device" / ENGINE).write_bytes(b'ENGINE{"evil": 1}')
    with pytest.raises(BundleError, match="not what was signed"):
        Bundle.load(work, trust=both)


def test_a_failed_adopt_leaves_trtexecs_files_in_place(
    trt: Any, export_bundle: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgevcf.targets import jetson

    _, bundle = export_bundle("jetson")
    work = _copy(bundle, tmp_path / "b")
    (work / "device").mkdir()
    (work / "device" / ENGINE).write_bytes(b"ENGINE{}")

    def broken() -> dict[str, str]:
        raise BundleError("device facts unreadable")

    monkeypatch.setattr("edgevcf.backends.tensorrt.device_facts", broken)
    with pytest.raises(BundleError, match="device facts unreadable"):
        jetson.build_bundle_engine(work, adopt=True)
    assert (work / "device" / ENGINE).read_bytes() == b"ENGINE{}"  # trtexec's engine is still there
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # no debris


def test_export_build_engine_sign_signs_the_engine_with_the_same_key(
    trt: Any, tiny_export: Any, tmp_path: Path
) -> None:
    """On the device, `export --build-engine --sign KEY`: the signer saw the engine, so the same
    key signs the export and BUNDLE/device."""
    from click.testing import CliRunner

    from edgevcf.bundle import Bundle
    from edgevcf.cli import cli
    from edgevcf.signing import Trust, new_key

    key, pub, kid = new_key(tmp_path / "site")
    res = CliRunner().invoke(cli, [
        "--quiet", "export", "--target", "jetson", "--checkpoint", str(tiny_export.checkpoint),
        "--calib", str(tiny_export.manifest), "--out", str(tmp_path / "b"), "--build-engine",
        "--sign", str(key),
    ])  # fmt: skip
    assert res.exit_code in (0, 4), res.output
    if res.exit_code == 4:  # a bundle that failed its gate is never signed
        assert not (tmp_path / "b" / "device" / "model.sig").exists()
        return
    built = Bundle.load(tmp_path / "b", trust=Trust.load([pub]))
    assert built.signer_key_id == kid and built.device is not None
    assert built.device.signer_key_id == kid and built.artifact().name == "engine"
