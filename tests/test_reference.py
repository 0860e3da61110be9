"""docs/reference.md is generated from the code: it must be what the generator prints now."""

from pathlib import Path

from mc_jupyter.reference import render

ROOT = Path(__file__).resolve().parent.parent


def test_the_reference_page_is_up_to_date():
    assert (ROOT / "docs" / "reference.md").read_text() == render(), \
        "docs/reference.md is stale: run `python -m mc_jupyter.reference > docs/reference.md`"


def test_it_lists_every_task_driver_and_key():
    page = render()
    for needle in ("`text-embedding`", "`llamacpp`", "`peft_adapters`", "`max_output_length`", "`ready_timeout`",
                   "`depends_on`", "%%compose [--dry-run] [-f FILE]", "mc_jupyter.run("):
        assert needle in page
