"""Atomic file writes under concurrency: the array tasks of a sharding job may write one manifest at once."""

import json
import threading

from vidprism_ds.data.prep import writer


def test_concurrent_writers_of_one_file_each_rename_their_own_complete_copy(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    both_written = threading.Barrier(2, timeout=10)
    real_replace = writer.os.replace

    def replace_after_both_wrote(src, dst):
        both_written.wait()  # both temporaries exist before either is renamed: the race, made certain
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", replace_after_both_wrote)
    errors = []

    def write(payload):
        try:
            writer.write_json_atomically(target, payload)
        except OSError as err:  # a shared temporary name: the second rename finds nothing
            errors.append(err)

    threads = [threading.Thread(target=write, args=({"writer": k},)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert json.loads(target.read_text()) in ({"writer": 0}, {"writer": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary left behind
