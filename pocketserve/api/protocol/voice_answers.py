"""The shapes of the voice routes' answers (/v1/dialogue and the short aliases), for
/openapi.json only; see answers.py for why they forbid extra keys."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pocketserve.api.protocol.answers import Answer, ErrorDetail, Usage


class DialogueTimings(Answer):
    transcribe_ms: float | None = Field(description="Hearing the audio (Whisper).")
    reply_first_token_ms: float | None = Field(description="From the start of the answer to "
                                               "its first token.")
    reply_ms: float | None = Field(description="The whole written answer.")
    speech_ms: float | None = Field(description="From the first sentence handed to speech "
                                    "to its last audio (overlaps reply_ms).")
    first_audio_ms: float | None = Field(description="From the start of the turn to the "
                                         "first audio.")
    total_ms: float | None = Field(description="The whole turn, once the upload was read.")


class DialogueUsage(Answer):
    input_audio_seconds: float
    prompt_tokens: int = Field(description="What the chat model read: instructions, the "
                               "session's history and this turn's transcript.")
    completion_tokens: int
    output_audio_seconds: float


class _TurnFields(Answer):
    session_id: str = Field(description="Send it back as `session_id` to continue.")
    transcript: str = Field(description="What was heard.")
    reply: str = Field(description="The answer's text.")
    timings: DialogueTimings
    usage: DialogueUsage
    turns: int = Field(description="Turns the session remembers now, this one included.")
    dropped_turns: int = Field(description="Older turns dropped to keep within the bounds.")


class DialogueTurn(_TurnFields):
    object: Literal["dialogue.turn"]
    audio: str = Field(description="Base64 of the spoken answer, one file.")
    response_format: str
    media_type: str


class DialogueTranscriptEvent(Answer):
    type: Literal["dialogue.transcript"]
    session_id: str
    transcript: str


class DialogueReplyDelta(Answer):
    type: Literal["dialogue.reply.delta"]
    delta: str


class DialogueAudioDelta(Answer):
    type: Literal["dialogue.audio.delta"]
    audio: str = Field(description="Base64 of the next bytes of one audio file.")


class DialogueDone(_TurnFields):
    type: Literal["dialogue.done"]


class DialogueError(Answer):
    type: Literal["error"]
    error: ErrorDetail


class DialogueMessage(Answer):
    role: Literal["user", "assistant"]
    content: str


class DialogueSession(Answer):
    object: Literal["dialogue.session"]
    id: str
    messages: list[DialogueMessage] = Field(description="The remembered turns, oldest first.")
    turns: int
    dropped_turns: int
    created_at: int
    expires_in_s: float | None = Field(description="Seconds until it is forgotten if unused.")


class DialogueDeleted(Answer):
    object: Literal["dialogue.session.deleted"]
    id: str
    deleted: bool


class TextToSpeechAudio(Answer):
    audio: str = Field(description="Base64 of the audio file.")
    format: str
    media_type: str
    model: str
    duration_s: float


class GeneratedText(Answer):
    generated_text: str
    model: str
    finish_reason: str | None
    usage: Usage | None


DIALOGUE_EVENTS = (DialogueTranscriptEvent, DialogueReplyDelta, DialogueAudioDelta,
                   DialogueDone, DialogueError)
