"""``mfgv models`` as a table a person reads: a header, aligned columns, rates as percentages."""

from mfg_assets.tables import text_table


def test_columns_are_aligned_under_a_header_and_numbers_right_aligned() -> None:
    table = text_table(("version", "test accuracy"), [("l1-a-v1", "98.20 %"), ("l1-a-v12", "100.00 %")])
    lines = table.splitlines()
    assert lines[0] == "version   test accuracy"
    assert lines[1] == "--------  -------------"
    assert lines[2] == "l1-a-v1         98.20 %" and lines[3] == "l1-a-v12       100.00 %"
