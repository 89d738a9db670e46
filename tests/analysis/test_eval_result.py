import pytest

from vidprism_ds.analysis.eval_result import TOP_K, EvalResult, reported_top_k, top_k_text


@pytest.mark.parametrize("num_classes, shown", [(1, ()), (4, (1,)), (5, (1,)), (6, (1, 5)), (400, (1, 5))])
def test_top_k_is_reported_only_below_the_number_of_classes(num_classes, shown):
    assert reported_top_k(num_classes) == shown
    text = top_k_text({1: 0.5, 5: 1.0}, num_classes, digits=3)
    assert ("top-1 0.500" in text, "top-5 1.000" in text) == (1 in shown, 5 in shown)


def test_a_result_lists_every_counted_k_in_its_metrics():
    result = EvalResult(accuracy_by_k={1: 0.5, 5: 0.75}, samples=4, per_class_accuracy=[0.5, 0.5])
    assert (result.top1, result.top5, result.num_classes) == (0.5, 0.75, 2)
    assert result.as_dict() == {**{f"top{k}": result.accuracy_by_k[k] for k in TOP_K}, "samples": 4, "damaged_samples": 0}
