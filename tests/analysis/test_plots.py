"""The figures as a reader sees them: colour scales, numbers in cells, labels where they belong."""

import numpy as np
import pytest
from matplotlib.figure import Figure

import vidprism_ds.analysis.plots as plots
from vidprism_ds.analysis.collect import Specialisation


@pytest.fixture
def saved(monkeypatch):
    """The figures the plot functions would have written, instead of PNGs."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=110: figures.append(fig) or path)
    return figures


def _colour_bars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_readout_weights_keep_the_whole_0_to_1_scale_with_uniform_marked(saved):
    weights = np.array([[0.24, 0.26], [0.27, 0.23]])  # close to uniform: must not look like strong preferences
    plots.plot_weight_by_class(weights, ["a", "b"], ["rate 2", "rate 4"], "w.png")
    fig, = saved
    image = fig.axes[0].images[0]
    assert image.get_clim() == (0.0, 1.0)
    bar, = _colour_bars(fig)
    ticks = dict(zip(bar.get_yticks(), (label.get_text() for label in bar.get_yticklabels())))
    assert ticks[0.5] == "1/2" and "uniform" in bar.get_ylabel()
    assert [text.get_text() for text in fig.axes[0].texts] == ["0.24", "0.26", "0.27", "0.23"]


def test_cell_numbers_are_legible_on_light_and_dark_cells():
    ax = Figure().subplots()
    plots.heatmap(ax, np.array([[0.0, 1.0, -1.0]]), ["r"], ["a", "b", "c"], "t", vmin=-1, vmax=1, cmap="RdBu_r")
    # 0 is near white on this scale, both ends are dark
    assert [text.get_color() for text in ax.texts] == ["black", "white", "white"]


def test_grids_share_one_colour_bar_and_label_rows_once_a_row(saved):
    panels = {f"v{i}": (np.full((3, 2), 0.5), ["e0", "e1"]) for i in range(5)}
    plots.plot_weight_grid(panels, ["first", "second", "third"], "g.png")
    plots.plot_similarity_grid({"v": (np.eye(2), ["e0", "e1"])}, "s.png")
    weights_fig, similarity_fig = saved
    assert len(_colour_bars(weights_fig)) == 1 and len(_colour_bars(similarity_fig)) == 1
    panels_drawn = [ax for ax in weights_fig.axes if ax.get_visible() and ax.images]
    row_names = [[label.get_text() for label in ax.get_yticklabels()] for ax in panels_drawn]
    assert row_names[0] == row_names[4] == ["first", "second", "third"]  # first panel of each row of 4
    assert all(names == ["", "", ""] for names in row_names[1:4])


def test_keep_positions_has_a_colour_scale_and_rows_in_the_panels_order(saved):
    spec = Specialisation(labels_n=np.array([0, 1]), predictions_n=np.array([0, 0]),
                          expert_weights_ne=np.full((2, 2), 0.5), expert_means_ned=np.ones((2, 2, 3)),
                          keep_indices=[np.array([[0, 2], [1, 3]]), np.array([[3], [3]])], num_frames=4)
    plots.plot_keep_positions(spec, [2, 4], ["c0", "c1"], "k.png")
    fig, = saved
    bar, = _colour_bars(fig)
    assert "fraction" in bar.get_xlabel()
    histogram = fig.axes[2]
    rows = histogram.images[0].get_array()
    # rate 4 kept frame 3 in both clips: its row is the upper one, as in the clip panels (r=2 below r=4)
    assert histogram.images[0].origin == "lower" and rows[1].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert [label.get_text() for label in histogram.get_yticklabels()] == ["r=2", "r=4"]


def test_window_spans_restart_at_a_multirate_clips_burst_part_for_the_rates_reading_it():
    assert plots.window_spans(8, 0, 4, 2) == [(0, 4), (4, 8)]
    # 6 segment frames, 4 burst frames: rate 4's last segment window is short; a fast group reads each burst
    # frame on its own, then each change over two frames
    assert plots.window_spans(10, 4, 4, 2 + 7) == [(0, 4), (4, 6), (6, 7), (7, 8), (8, 9), (9, 10),
                                                   (6, 8), (7, 9), (8, 10)]
    assert plots.window_spans(10, 4, 8, 1) == [(0, 6)]  # a slow rate never reads the burst


def test_keep_positions_of_a_multirate_clip_mark_the_burst_part(saved):
    spec = Specialisation(labels_n=np.array([0]), predictions_n=np.array([0]),
                          expert_weights_ne=np.full((1, 2), 0.5), expert_means_ned=np.ones((1, 2, 3)),
                          keep_indices=[np.array([[1, 2, 4, 5, 6, 7, 5, 6, 7]]), np.array([[3]])], num_frames=8,
                          burst_frames=4)
    plots.plot_keep_positions(spec, [2, 4], ["c0"], "k.png")
    fig, = saved
    clip_panel = fig.axes[0]
    boundaries = [line.get_xdata()[0] for line in clip_panel.get_lines()]
    assert boundaries == [3.5]
    shaded = sorted((round(p.get_x() + 0.5), round(p.get_x() + p.get_width() + 0.5)) for p in clip_panel.patches)
    # r=2: spans 0, 2, 4, 6, 8 of [0,2) [2,4) [4] [5] [6] [7] [4,6) [5,7) [6,8); r=4: its one window
    assert shaded == [(0, 2), (0, 4), (4, 5), (4, 6), (6, 7), (6, 8)]
