"""The built-in tasks: SST-5 ratings, STS-B similarity, GSM8K math (any table file: :mod:`workbench.tasks.spec`)."""

from __future__ import annotations

import re
from functools import partial

from workbench.tasks.base import Task, register_task
from workbench.tasks.loaders import read_gsm8k, read_sst5, read_stsb
from workbench.tasks.parsers import parse_gsm8k, parse_rating
from workbench.text import clean_text


@register_task("sst5")
def sst5() -> Task:
    return Task(
        name="sst5",
        load=read_sst5,
        instruction=(
            "You rate the sentiment of movie review sentences on a scale from 1 to 5: "
            "1 very negative, 2 negative, 3 neutral, 4 positive, 5 very positive. "
            "Answer with the digit only."
        ),
        render=lambda ex: f"Review: {clean_text(ex.text)}",  # SST text is PTB-tokenised
        answer=lambda ex: f"{ex.target:.0f}",
        parse=partial(parse_rating, low=1, high=5),
        grid=[1.0, 2.0, 3.0, 4.0, 5.0],
        grid_format="{:.0f}",
        metrics=("squared_error", "absolute_error", "exact_match"),
        max_new_tokens=4,
    )


@register_task("stsb")
def stsb(step: float = 0.1, answer_step: float | None = None) -> Task:
    """STS-B on a grid of ``step``; gold answers (training targets, few-shot turns) are rounded to
    ``answer_step`` (default ``step``), e.g. 0.5 to train on coarser, less noisy targets."""
    # A 0.1 grid holds the answers models write ("2.5", "1.3"): a 0.2 grid missed about half of
    # the base model's mass, so its "exact" and "sampled" distributions differed.
    answer_step = answer_step or step
    if abs(answer_step / step - round(answer_step / step)) > 1e-9:
        raise ValueError(f"stsb: answer_step {answer_step} must be a multiple of the grid step {step}")
    steps = round(5.0 / step)
    return Task(
        name="stsb",
        load=read_stsb,
        instruction=(
            "You rate how similar in meaning two sentences are, from 0.0 (unrelated) to 5.0 "
            "(equivalent), with one decimal. Answer with the number only."
        ),
        render=lambda ex: f"Sentence 1: {ex.text}\nSentence 2: {ex.text_b}",
        answer=lambda ex: f"{round(ex.target / answer_step) * answer_step:.1f}",
        parse=partial(parse_rating, low=0, high=5),
        grid=[round(i * step, 6) for i in range(steps + 1)],
        grid_format="{:.1f}",
        metrics=("squared_error", "absolute_error", "exact_match"),
        max_new_tokens=6,
    )


def _worked_solution(ex) -> str:
    steps, final = ex.meta["solution"].rsplit("####", 1)
    steps = re.sub(r"<<[^>]*>>", "", steps).strip()  # drop the calculator annotations
    return f"{steps}\nThe answer is {final.strip()}."


@register_task("gsm8k")
def gsm8k() -> Task:
    return Task(
        name="gsm8k",
        load=read_gsm8k,
        instruction="Solve the math word problem step by step. End with 'The answer is N.'",
        render=lambda ex: f"Question: {ex.text}",
        answer=_worked_solution,
        parse=parse_gsm8k,
        grid=None,
        metrics=("absolute_error", "exact_match"),
        max_new_tokens=192,
    )
