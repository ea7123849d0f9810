"""One generate() call for a group of vision-chat requests, each row streaming on its own.

transformers generates a padded batch in lock step; a streamer object gets every step's new
token of every row, and a stopping criterion says per row when it is done. We use both to give
each request what llama.cpp's slots give: its own text as it is decoded, its own `max_tokens`,
stop strings and end of text, and cancellation, while the other rows go on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pocketserve.backends.chat_stream import ChoiceParser
from pocketserve.backends.stops import StopScanner
from pocketserve.engines.chat import OnEvent
from pocketserve.errors import ContextLengthExceeded, InvalidRequest, PocketserveError
from pocketserve.ops.chat import FinishReason, TextDelta

if TYPE_CHECKING:
    from pocketserve.backends.transformers_vlm import VisionBackend


@dataclass
class Row:
    """One choice of a request: one sequence of the batch."""

    index: int
    ids: list[int] = field(default_factory=list)
    generated: int = 0
    sent: str = ""
    done: bool = False
    parser: ChoiceParser | None = None
    scanner: StopScanner | None = None


@dataclass
class Job:
    """One request: its prompt, images (decoded), generate() arguments and rows (`n`)."""

    text: str
    images: list[Any]
    sampling: dict[str, Any]
    reasoning: bool
    stops: list[str]
    max_tokens: int | None
    rows: list[Row]
    on_event: OnEvent
    cancelled: threading.Event
    finished: threading.Event = field(default_factory=threading.Event)
    error: PocketserveError | None = None
    prompt_tokens: int = 0
    budget: int = 0


def run_group(backend: VisionBackend, jobs: list[Job]) -> None:
    """Generate every row of `jobs` in one batch (they share sampling arguments)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    jobs = [j for j in jobs if not j.cancelled.is_set()]
    if not jobs:
        return
    texts = [j.text for j in jobs for _ in j.rows]
    images = [j.images for j in jobs for _ in j.rows] if jobs[0].images else None
    try:
        inputs = backend.processor(text=texts, images=images, padding=True, return_tensors="pt")
    except Exception as exc:  # one job's input is at fault: find which, alone
        if len(jobs) > 1:
            for job in jobs:
                run_group(backend, [job])
            return
        jobs[0].error = InvalidRequest(f"The images could not be prepared: {exc}",
                                       param="messages")
        return
    lengths = [int(n) for n in inputs["attention_mask"].sum(dim=1)]
    at, fitting = 0, []
    for job in jobs:
        job.prompt_tokens = lengths[at]
        at += len(job.rows)
        try:
            job.budget = backend.check_length(job, job.prompt_tokens)
        except ContextLengthExceeded as exc:
            job.error = exc
            job.finished.set()
            continue
        fitting.append(job)
    if len(fitting) < len(jobs):  # the batch again without those that cannot fit
        if fitting:
            run_group(backend, fitting)
        return
    rows = _Rows(backend, jobs)

    class Done(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.tensor(rows.done_flags(), dtype=torch.bool, device=input_ids.device)

    arguments = dict(jobs[0].sampling)
    seed = arguments.pop("seed", None)
    if seed is not None:
        torch.manual_seed(int(seed))
    inputs = inputs.to(backend.device, dtype=backend.model.dtype)  # pixels as the weights
    with torch.inference_mode():
        backend.model.generate(
            **inputs, max_new_tokens=max(j.budget for j in jobs), streamer=rows,
            stopping_criteria=StoppingCriteriaList([Done()]),
            pad_token_id=backend.tokenizer.pad_token_id, **arguments)
    rows.finish_all()


class _Rows:
    """The streamer: takes each step's tokens (one per row) and turns them into events."""

    def __init__(self, backend: VisionBackend, jobs: list[Job]):
        self.tokenizer = backend.tokenizer
        self.eos = backend.eos_ids
        self.flat: list[tuple[Job, Row]] = [(j, r) for j in jobs for r in j.rows]
        self.prompt_seen = False
        for job, row in self.flat:
            row.parser = ChoiceParser(row.index, reasoning=job.reasoning)
            row.scanner = StopScanner(job.stops) if job.stops else None

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() hands the prompt over first
            self.prompt_seen = True
            return
        tokens = [int(t) for t in value.reshape(-1).tolist()]
        for (job, row), token in zip(self.flat, tokens, strict=True):
            if row.done:
                continue
            if job.cancelled.is_set():
                row.done = True
            elif token in self.eos:
                self._finish(job, row, "stop")
            else:
                self._step(job, row, token)
        self._settle()

    def end(self) -> None:
        return None

    def done_flags(self) -> list[bool]:
        return [row.done or job.cancelled.is_set() for job, row in self.flat]

    def finish_all(self) -> None:
        for job, row in self.flat:
            if not row.done and not job.cancelled.is_set():
                self._finish(job, row, "length")
        self._settle()

    def _step(self, job: Job, row: Row, token: int) -> None:
        row.ids.append(token)
        row.generated += 1
        text = str(self.tokenizer.decode(row.ids, skip_special_tokens=True))
        if text.endswith("\ufffd") and row.generated < job.budget:
            return  # the middle of a character: wait for its next byte
        delta, row.sent = text[len(row.sent):], text
        if row.scanner is not None:
            delta = row.scanner.feed(delta)
        assert row.parser is not None
        self._emit(job, row.parser.feed(delta))
        if row.scanner is not None and row.scanner.matched is not None:
            self._finish(job, row, "stop", row.scanner.matched)
        elif row.generated >= job.budget:
            self._finish(job, row, "length")

    def _finish(self, job: Job, row: Row, reason: FinishReason,
                stop: str | None = None) -> None:
        assert row.parser is not None
        row.done = True
        tail = row.scanner.flush() if row.scanner is not None and stop is None else ""
        events = row.parser.feed(tail) if tail else []
        events += row.parser.finish(reason)
        last = events[-1]
        if stop is not None and isinstance(last, TextDelta):
            last.stop_sequence = stop
        self._emit(job, events)

    @staticmethod
    def _emit(job: Job, events: list[Any]) -> None:
        for event in events:
            job.on_event(event)

    def _settle(self) -> None:
        """Let each job whose rows are all done return now, before the batch ends."""
        for job in {id(j): j for j, _ in self.flat}.values():
            if not job.finished.is_set() and all(r.done for r in job.rows):
                job.finished.set()
