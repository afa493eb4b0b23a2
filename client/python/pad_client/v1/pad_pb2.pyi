from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecodingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECODING_MODE_UNSPECIFIED: _ClassVar[DecodingMode]
    DECODING_MODE_PAD: _ClassVar[DecodingMode]
    DECODING_MODE_VANILLA: _ClassVar[DecodingMode]
    DECODING_MODE_PREFERENCE_PROMPT: _ClassVar[DecodingMode]
    DECODING_MODE_GENARM: _ClassVar[DecodingMode]

class Composition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPOSITION_UNSPECIFIED: _ClassVar[Composition]
    COMPOSITION_PROMPT: _ClassVar[Composition]
    COMPOSITION_WEIGHTED: _ClassVar[Composition]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_CANCELLED: _ClassVar[FinishReason]
DECODING_MODE_UNSPECIFIED: DecodingMode
DECODING_MODE_PAD: DecodingMode
DECODING_MODE_VANILLA: DecodingMode
DECODING_MODE_PREFERENCE_PROMPT: DecodingMode
DECODING_MODE_GENARM: DecodingMode
COMPOSITION_UNSPECIFIED: Composition
COMPOSITION_PROMPT: Composition
COMPOSITION_WEIGHTED: Composition
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_CANCELLED: FinishReason

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Principle(_message.Message):
    __slots__ = ("text", "weight")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    text: str
    weight: float
    def __init__(self, text: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class Preference(_message.Message):
    __slots__ = ("principles", "composition", "reward_model", "policy_sees_guideline")
    PRINCIPLES_FIELD_NUMBER: _ClassVar[int]
    COMPOSITION_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_SEES_GUIDELINE_FIELD_NUMBER: _ClassVar[int]
    principles: _containers.RepeatedCompositeFieldContainer[Principle]
    composition: Composition
    reward_model: str
    policy_sees_guideline: bool
    def __init__(self, principles: _Optional[_Iterable[_Union[Principle, _Mapping]]] = ..., composition: _Optional[_Union[Composition, str]] = ..., reward_model: _Optional[str] = ..., policy_sees_guideline: _Optional[bool] = ...) -> None: ...

class DecodingParams(_message.Message):
    __slots__ = ("mode", "top_k", "beta", "temperature", "seed", "max_new_tokens", "stop", "ignore_eos", "presence_penalty", "frequency_penalty")
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    IGNORE_EOS_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    mode: DecodingMode
    top_k: int
    beta: float
    temperature: float
    seed: int
    max_new_tokens: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    ignore_eos: bool
    presence_penalty: float
    frequency_penalty: float
    def __init__(self, mode: _Optional[_Union[DecodingMode, str]] = ..., top_k: _Optional[int] = ..., beta: _Optional[float] = ..., temperature: _Optional[float] = ..., seed: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., ignore_eos: _Optional[bool] = ..., presence_penalty: _Optional[float] = ..., frequency_penalty: _Optional[float] = ...) -> None: ...

class GenerateAlignedRequest(_message.Message):
    __slots__ = ("messages", "prompt", "preference", "decoding", "return_token_ids", "return_diagnostics")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    DECODING_FIELD_NUMBER: _ClassVar[int]
    RETURN_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    RETURN_DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt: str
    preference: Preference
    decoding: DecodingParams
    return_token_ids: bool
    return_diagnostics: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt: _Optional[str] = ..., preference: _Optional[_Union[Preference, _Mapping]] = ..., decoding: _Optional[_Union[DecodingParams, _Mapping]] = ..., return_token_ids: _Optional[bool] = ..., return_diagnostics: _Optional[bool] = ...) -> None: ...

class TokenDiagnostics(_message.Message):
    __slots__ = ("candidates", "policy_logits", "rewards", "scores", "candidate_texts")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    POLICY_LOGITS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_TEXTS_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedScalarFieldContainer[int]
    policy_logits: _containers.RepeatedScalarFieldContainer[float]
    rewards: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    candidate_texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, candidates: _Optional[_Iterable[int]] = ..., policy_logits: _Optional[_Iterable[float]] = ..., rewards: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ..., candidate_texts: _Optional[_Iterable[str]] = ...) -> None: ...

class GeneratedToken(_message.Message):
    __slots__ = ("id", "reward", "changed_top_choice", "diagnostics")
    ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    CHANGED_TOP_CHOICE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    id: int
    reward: float
    changed_top_choice: bool
    diagnostics: TokenDiagnostics
    def __init__(self, id: _Optional[int] = ..., reward: _Optional[float] = ..., changed_top_choice: _Optional[bool] = ..., diagnostics: _Optional[_Union[TokenDiagnostics, _Mapping]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "generated_tokens", "queue_seconds", "decode_seconds")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    generated_tokens: int
    queue_seconds: float
    decode_seconds: float
    def __init__(self, prompt_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ..., queue_seconds: _Optional[float] = ..., decode_seconds: _Optional[float] = ...) -> None: ...

class Final(_message.Message):
    __slots__ = ("finish_reason", "usage")
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    finish_reason: FinishReason
    usage: Usage
    def __init__(self, finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class GenerateAlignedResponse(_message.Message):
    __slots__ = ("text", "tokens", "final")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    text: str
    tokens: _containers.RepeatedCompositeFieldContainer[GeneratedToken]
    final: Final
    def __init__(self, text: _Optional[str] = ..., tokens: _Optional[_Iterable[_Union[GeneratedToken, _Mapping]]] = ..., final: _Optional[_Union[Final, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RewardModelInfo(_message.Message):
    __slots__ = ("name", "backbone", "adapter", "shares_policy_backbone")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    SHARES_POLICY_BACKBONE_FIELD_NUMBER: _ClassVar[int]
    name: str
    backbone: str
    adapter: str
    shares_policy_backbone: bool
    def __init__(self, name: _Optional[str] = ..., backbone: _Optional[str] = ..., adapter: _Optional[str] = ..., shares_policy_backbone: _Optional[bool] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_prompt_tokens", "max_new_tokens", "max_top_k", "max_principles", "max_stop_strings", "max_sequence_tokens", "max_request_bytes")
    MAX_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_PRINCIPLES_FIELD_NUMBER: _ClassVar[int]
    MAX_STOP_STRINGS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQUENCE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_prompt_tokens: int
    max_new_tokens: int
    max_top_k: int
    max_principles: int
    max_stop_strings: int
    max_sequence_tokens: int
    max_request_bytes: int
    def __init__(self, max_prompt_tokens: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., max_top_k: _Optional[int] = ..., max_principles: _Optional[int] = ..., max_stop_strings: _Optional[int] = ..., max_sequence_tokens: _Optional[int] = ..., max_request_bytes: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("policy", "reward_models", "limits")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODELS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    policy: str
    reward_models: _containers.RepeatedCompositeFieldContainer[RewardModelInfo]
    limits: Limits
    def __init__(self, policy: _Optional[str] = ..., reward_models: _Optional[_Iterable[_Union[RewardModelInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...
