"""A thin typed wrapper over pad.v1's GenerateAligned and ListModels, synchronous (grpc) and asynchronous
(grpc.aio). Failures are grpc.RpcError (grpc.aio.AioRpcError) with the server's status: INVALID_ARGUMENT names
the field, RESOURCE_EXHAUSTED means retry later, UNAVAILABLE means loading or draining.

Channels balance and retry on their own (CHANNEL_OPTIONS): with a target that resolves to several replicas
("dns:///pad-server-headless.ns.svc:50051", a Kubernetes headless Service), each call goes to the next
replica (round_robin), and a call refused UNAVAILABLE before its first message (a replica draining or gone)
is retried up to 4 times with backoff; once tokens have arrived, gRPC never retries, so no answer repeats."""
from __future__ import annotations

import dataclasses
import json
from typing import AsyncIterator, Iterator, Optional, Sequence, Union

import grpc

from pad_client.v1 import pad_pb2, pad_pb2_grpc

MODES = {"pad": pad_pb2.DECODING_MODE_PAD, "vanilla": pad_pb2.DECODING_MODE_VANILLA,
         "preference_prompt": pad_pb2.DECODING_MODE_PREFERENCE_PROMPT, "genarm": pad_pb2.DECODING_MODE_GENARM}
COMPOSITIONS = {"prompt": pad_pb2.COMPOSITION_PROMPT, "weighted": pad_pb2.COMPOSITION_WEIGHTED}
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "pad.v1.PadService"}],
        "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "2s", "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
}
CHANNEL_OPTIONS = (("grpc.service_config", json.dumps(SERVICE_CONFIG)), ("grpc.enable_retries", 1))
FINISH_REASONS = {pad_pb2.FINISH_REASON_STOP: "stop", pad_pb2.FINISH_REASON_LENGTH: "length",
                  pad_pb2.FINISH_REASON_CANCELLED: "cancelled"}


@dataclasses.dataclass(frozen=True)
class Token:
    """A generated token, when the request asked for them (return_tokens or diagnostics)."""
    id: int
    reward: float
    changed_top_choice: bool


@dataclasses.dataclass(frozen=True)
class Delta:
    """Text generated since the previous message of the stream."""
    text: str
    tokens: tuple = ()


@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    generated_tokens: int
    queue_seconds: float
    decode_seconds: float


@dataclasses.dataclass(frozen=True)
class Final:
    """The stream's last item: why it ended ("stop", "length", "cancelled") and what it used."""
    finish_reason: str
    usage: Usage


Event = Union[Delta, Final]


def build_request(messages=None, *, prompt: str = "", principles: Sequence[str] = (),
                  weights: Optional[Sequence[float]] = None, composition: str = "prompt", mode: str = "pad",
                  reward_model: str = "", beta: Optional[float] = None, top_k: Optional[int] = None,
                  temperature: float = 0.0, seed: int = 0, max_new_tokens: Optional[int] = None,
                  stop: Sequence[str] = (), ignore_eos: bool = False, presence_penalty: float = 0.0,
                  frequency_penalty: float = 0.0, return_tokens: bool = False) -> pad_pb2.GenerateAlignedRequest:
    """The pad.v1 request for these arguments. `messages` are {"role", "content"} dicts; give them or `prompt`."""
    if weights is not None and len(weights) != len(principles):
        raise ValueError(f"weights: {len(weights)} for {len(principles)} principles")
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {sorted(MODES)}")
    if composition not in COMPOSITIONS:
        raise ValueError(f"composition: {composition!r} is not one of {sorted(COMPOSITIONS)}")
    request = pad_pb2.GenerateAlignedRequest(
        messages=[pad_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in messages or []],
        prompt=prompt, return_token_ids=return_tokens)
    for i, text in enumerate(principles):
        principle = request.preference.principles.add(text=text)
        if weights is not None:
            principle.weight = weights[i]
    request.preference.composition = COMPOSITIONS[composition]
    request.preference.reward_model = reward_model
    decoding = request.decoding
    decoding.mode = MODES[mode]
    decoding.temperature = temperature
    decoding.seed = seed
    decoding.stop.extend(stop)
    decoding.ignore_eos = ignore_eos
    decoding.presence_penalty = presence_penalty
    decoding.frequency_penalty = frequency_penalty
    if beta is not None:
        decoding.beta = beta
    if top_k is not None:
        decoding.top_k = top_k
    if max_new_tokens is not None:
        decoding.max_new_tokens = max_new_tokens
    return request


def _events(response: pad_pb2.GenerateAlignedResponse) -> Iterator[Event]:
    if response.text or response.tokens:
        yield Delta(response.text, tuple(Token(t.id, t.reward, t.changed_top_choice) for t in response.tokens))
    if response.HasField("final"):
        u = response.final.usage
        yield Final(FINISH_REASONS.get(response.final.finish_reason, "unspecified"),
                    Usage(u.prompt_tokens, u.generated_tokens, u.queue_seconds, u.decode_seconds))


def _metadata(token: Optional[str]):
    return (("authorization", f"Bearer {token}"),) if token else None


class PadClient:
    """pad.v1 over one channel. `target` is host:port; `token` the server's bearer token, if it has one;
    `credentials` grpc.ssl_channel_credentials(...) for TLS."""

    def __init__(self, target: str = "localhost:50051", *, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None):
        self._channel = (grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
                         if credentials is not None else grpc.insecure_channel(target, options=CHANNEL_OPTIONS))
        self._stub = pad_pb2_grpc.PadServiceStub(self._channel)
        self._metadata = _metadata(token)

    def generate_aligned(self, messages=None, *, timeout: Optional[float] = None, **fields) -> Iterator[Event]:
        """Streams one aligned answer: Delta items as tokens are chosen, then one Final. The arguments are
        build_request's. Leaving the loop early (break, close()) cancels the request on the server."""
        call = self._stub.GenerateAligned(build_request(messages, **fields), timeout=timeout,
                                          metadata=self._metadata)
        try:
            for response in call:
                yield from _events(response)
        finally:
            call.cancel()

    def list_models(self, timeout: Optional[float] = None) -> pad_pb2.ListModelsResponse:
        return self._stub.ListModels(pad_pb2.ListModelsRequest(), timeout=timeout, metadata=self._metadata)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncPadClient:
    """PadClient for asyncio (grpc.aio)."""

    def __init__(self, target: str = "localhost:50051", *, token: Optional[str] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None):
        self._channel = (grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
                         if credentials is not None else grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS))
        self._stub = pad_pb2_grpc.PadServiceStub(self._channel)
        self._metadata = _metadata(token)

    async def generate_aligned(self, messages=None, *, timeout: Optional[float] = None,
                               **fields) -> AsyncIterator[Event]:
        call = self._stub.GenerateAligned(build_request(messages, **fields), timeout=timeout,
                                          metadata=self._metadata)
        try:
            async for response in call:
                for event in _events(response):
                    yield event
        finally:
            call.cancel()

    async def list_models(self, timeout: Optional[float] = None) -> pad_pb2.ListModelsResponse:
        return await self._stub.ListModels(pad_pb2.ListModelsRequest(), timeout=timeout, metadata=self._metadata)

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
