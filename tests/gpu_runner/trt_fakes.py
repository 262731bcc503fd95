"""Stand-ins for ``tensorrt`` and ``pycuda.driver``: just enough of each for the TensorRT
backend's load/run/close choreography to run, and be checked, on a machine without a GPU."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np


class FakeCuda(types.ModuleType):
    """Just enough of pycuda.driver: host arrays, byte-array "device" memory, a context stack."""

    class Error(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pycuda.driver")
        self.memory: dict[int, bytearray] = {}
        self.pushed = 0
        self.detached = False
        fake = self

        class Context:
            def push(self) -> None:
                fake.pushed += 1

            def detach(self) -> None:
                fake.detached = True

            @staticmethod
            def pop() -> None:
                fake.pushed -= 1

        class Device:
            def __init__(self, index: int) -> None:
                pass

            def name(self) -> str:
                return "Fake GPU"

            def compute_capability(self) -> tuple[int, int]:
                return (9, 0)

            def retain_primary_context(self) -> Context:
                return Context()

        class Stream:
            handle = 7

            def synchronize(self) -> None:
                pass

        self.Context, self.Device, self.Stream = Context, Device, Stream

    def init(self) -> None:
        pass

    def pagelocked_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def mem_alloc(self, nbytes: int) -> Any:
        fake = self

        class Allocation:
            def __int__(self) -> int:
                return id(self)

            def free(self) -> None:
                del fake.memory[int(self)]

        alloc = Allocation()
        self.memory[int(alloc)] = bytearray(nbytes)
        return alloc

    def memcpy_htod_async(self, dest: Any, src: np.ndarray, stream: Any) -> None:
        assert self.pushed == 1, "CUDA call outside the pushed context"
        self.memory[int(dest)][: src.nbytes] = src.tobytes()

    def memcpy_dtoh_async(self, dest: np.ndarray, src: Any, stream: Any) -> None:
        dest[...] = np.frombuffer(self.memory[int(src)][: dest.nbytes], dest.dtype).reshape(
            dest.shape)


class FakeTrt(types.ModuleType):
    """Enough of tensorrt 10: the "engine" is the profile list as JSON; running it writes
    [row sum of the mask, seq_len, profile index, 0...] per row."""

    def __init__(self, cuda: FakeCuda, version: str = "10.3.0") -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.builds: list[dict[str, Any]] = []
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                pass

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, list[Any]] = {}

            def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
                self.shapes[name] = [list(lo), list(opt), list(hi)]

        class BuilderConfig:
            def __init__(self) -> None:
                self.flags: set[str] = {"TF32"}
                self.profiles: list[Profile] = []

            def set_flag(self, flag: str) -> None:
                self.flags.add(flag)

            def clear_flag(self, flag: str) -> None:
                self.flags.discard(flag)

            def add_optimization_profile(self, profile: Profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

        class Tensor:
            def __init__(self, name: str) -> None:
                self.name = name

        class Network:
            num_inputs, num_outputs = 2, 1

            def get_input(self, i: int) -> Tensor:
                return Tensor(["input_ids", "attention_mask"][i])

            def get_output(self, i: int) -> Tensor:
                return Tensor("embedding")

        class Builder:
            def __init__(self, logger: Logger) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                assert flags == 0
                return Network()

            def create_builder_config(self) -> BuilderConfig:
                return BuilderConfig()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes:
                build = {"flags": sorted(config.flags),
                         "profiles": [p.shapes for p in config.profiles]}
                fake.builds.append(build)
                return json.dumps(build).encode()

        class OnnxParser:
            num_errors = 0

            def __init__(self, network: Network, logger: Logger) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                return Path(path).is_file()

        class ExecutionContext:
            def __init__(self, profiles: list[dict[str, Any]]) -> None:
                self.profiles, self.profile, self.shapes = profiles, -1, {}
                self.addresses: dict[str, int] = {}

            def set_optimization_profile_async(self, index: int, stream: int) -> bool:
                self.profile = index
                return True

            def set_input_shape(self, name: str, shape: tuple[int, int]) -> bool:
                lo, _, hi = self.profiles[self.profile][name]
                self.shapes[name] = tuple(shape)
                return all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True))

            def set_tensor_address(self, name: str, ptr: int) -> None:
                self.addresses[name] = ptr

            def get_tensor_shape(self, name: str) -> tuple[int, int]:
                return (self.shapes["input_ids"][0], 384)

            def execute_async_v3(self, stream: int) -> bool:
                assert cuda.pushed == 1, "execute outside the pushed context"
                batch, seq = self.shapes["attention_mask"]
                raw = cuda.memory[self.addresses["attention_mask"]][: batch * seq * 8]
                mask = np.frombuffer(raw, np.int64).reshape(batch, seq)
                out = np.zeros((batch, 384), np.float32)
                out[:, 0], out[:, 1], out[:, 2] = mask.sum(1), seq, self.profile
                cuda.memory[self.addresses["embedding"]][: out.nbytes] = out.tobytes()
                return True

        class Engine:
            num_io_tensors = 3

            def __init__(self, profiles: list[dict[str, Any]]) -> None:
                self.profiles = profiles
                self.num_optimization_profiles = len(profiles)

            def get_tensor_name(self, i: int) -> str:
                return ["input_ids", "attention_mask", "embedding"][i]

            def get_tensor_mode(self, name: str) -> str:
                return "OUTPUT" if name == "embedding" else "INPUT"

            def get_tensor_dtype(self, name: str) -> Any:
                return np.float32 if name == "embedding" else np.int64

            def create_execution_context(self) -> ExecutionContext:
                return ExecutionContext(self.profiles)

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
                try:
                    return Engine(json.loads(data)["profiles"])
                except ValueError:
                    return None

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser
        self.Runtime = Runtime
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", TF32="TF32")
        self.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        self.nptype = lambda dtype: dtype
