"""The progress line mfgv shows instead of Dagster's event stream: steps, what they do, an estimate of
what is left where a step counts ("epoch 3/12"), warnings in full, noise left out."""

import io

import dagster as dg

from mfg_assets.progress import ProgressLine, progress_logger


@dg.asset
def counted(context: dg.AssetExecutionContext) -> int:
    for epoch in range(1, 4):
        context.log.info(f"epoch {epoch}/3: loss=0.1")
    context.log.warning("a thing to look at")
    context.log.info("lineage: x <- y")
    return 1


def _run(live: bool) -> str:
    stream = io.StringIO()
    handler = ProgressLine(live=live, stream=stream)

    @dg.logger
    def capture(_init_context: dg.InitLoggerContext):
        import logging

        logger = logging.Logger("capture", level=logging.DEBUG)
        logger.addHandler(handler)
        return logger

    defs = dg.Definitions(assets=[counted], loggers={"capture": capture})
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(run_config={"loggers": {"capture": {}}})
    assert result.success
    handler.close()
    return stream.getvalue()


def test_plain_lines_name_the_step_and_its_messages_without_noise() -> None:
    out = _run(live=False)
    lines = out.splitlines()
    assert lines[0].endswith("counted: started") and "counted: epoch 2/3: loss=0.1" in out
    assert "warning: counted: a thing to look at" in out and "lineage:" not in out
    assert lines[-1].startswith("[") and "counted: done in" in lines[-1]
    assert "dagster - DEBUG" not in out and "STEP_START" not in out


def test_the_live_line_counts_and_estimates_what_is_left() -> None:
    out = _run(live=True)
    assert "3/3" in out and "left]" in out and "counted: epoch 3/3" in out
    assert "warning: counted: a thing to look at" in out  # printed above the live line, in full


def test_the_logger_is_a_dagster_logger_with_a_described_option() -> None:
    assert "live" in progress_logger.config_schema.as_field().config_type.fields
