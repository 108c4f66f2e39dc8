"""What a failed run tells its user: the cause a person can act on, not Dagster's wrapper."""

from typing import Any

__all__ = ["failure_summary", "interrupted", "root_cause"]


def root_cause(error: Any) -> str:
    """The message a user can act on: the platform's own ``dg.Failure`` if there is one in the chain
    (it says what to do), else the innermost exception. Dagster wraps a failing op's error in its own
    ("Error occurred while executing op ..."), which names no cause."""
    chain = [error]
    while getattr(chain[-1], "cause", None) is not None:
        chain.append(chain[-1].cause)
    failure = next((e for e in chain if getattr(e, "cls_name", "") == "Failure"), None)
    chosen = failure or chain[-1]
    message = chosen.message.strip()
    # Dagster writes "<module path>.<class>: <text>"; the module path is noise to a user, and the
    # class of the platform's own Failure says nothing its text does not.
    head, sep, text = message.partition(": ")
    if sep and head.split(".")[-1] == chosen.cls_name and " " not in head:
        return text.strip() if failure is not None else f"{chosen.cls_name}: {text.strip()}"
    return message


def failure_summary(result: Any) -> str:
    from dagster import DagsterEventType

    lines = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            lines.append(f"step {event.step_key} failed: {root_cause(error) if error else 'unknown error'}")
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                lines.append(f"check {evaluation.check_name} failed: {evaluation.description}")
    return "\n".join(lines) or "the run failed; open the run in the Dagster UI (make ui) for details"


def interrupted(result: Any) -> bool:
    """Whether the run stopped because the user interrupted it (Ctrl-C), not because a step failed."""
    from dagster import DagsterEventType

    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            while error is not None:
                if getattr(error, "cls_name", "") == "DagsterExecutionInterruptedError":
                    return True
                error = getattr(error, "cause", None)
    return False
