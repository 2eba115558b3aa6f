"""13-gram contamination: overlaps found after case/whitespace normalisation, and only real ones."""

from __future__ import annotations

from smolforge.evaluation.contamination import BenchmarkItem, overlapping_items, report

LONG = "the quick brown fox jumps over the lazy dog while the farmer sleeps in the warm afternoon sun"


def test_a_shared_13_gram_is_found_across_case_and_whitespace():
    train = ["Intro text.  THE QUICK brown fox jumps over\nthe lazy dog while the farmer sleeps in the barn"]
    items = [BenchmarkItem("t", "a", LONG), BenchmarkItem("t", "b", "completely different words " * 5)]
    assert overlapping_items(train, items) == {0}


def test_twelve_shared_words_are_not_an_overlap():
    twelve = " ".join(LONG.split()[:12])
    assert overlapping_items([twelve + " and then something else"], [BenchmarkItem("t", "a", LONG)]) == set()


def test_short_items_count_only_when_the_whole_item_occurs():
    items = [BenchmarkItem("t", "a", "What is the capital of France? The capital of France is Paris."),
             BenchmarkItem("t", "b", "What is the capital of Peru? The capital of Peru is Lima.")]
    train = ["user: what is the capital of france?  the capital of france is paris. thanks"]
    assert overlapping_items(train, items) == {0}


def test_report_counts_per_task_and_share():
    items = [BenchmarkItem("mc", "1", LONG), BenchmarkItem("mc", "2", "nothing in common at all here"),
             BenchmarkItem("gen", "3", "zebra")]
    out = report([LONG, "a zebra crossing"], items)
    assert out["ngram"] == 13 and out["training_texts"] == 2
    assert out["tasks"]["mc"] == {"items": 2, "overlapping": 1, "found_whole": 0, "share": 0.5, "examples": ["1"]}
    gen = out["tasks"]["gen"]  # one word, shorter than 13: it counts because it occurs whole, and says so
    assert gen["overlapping"] == 1 and gen["found_whole"] == 1 and gen["share"] == 1.0


def test_no_training_texts_means_no_overlap():
    assert report([], [BenchmarkItem("t", "a", LONG)])["tasks"]["t"]["overlapping"] == 0


def test_row_text_flattens_every_training_format():
    from smolforge.evaluation.contamination import row_text

    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    assert row_text(chat) == "Hi Hello"
    assert row_text({"prompt": "Q?", "completion": "A.", "n": 3}) == "Q? A."
    assert row_text({"chosen": [{"content": "yes"}], "rejected": [{"content": "no"}]}) == "yes no"
