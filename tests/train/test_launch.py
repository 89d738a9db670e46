import pytest

from vidprism_ds.train.launch import LaunchError, first_host, resolve_launch, slurm_port


def test_torch_launcher_variables_win():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "n0",
           "MASTER_PORT": "29500", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    info = resolve_launch(env, scontrol=None)
    assert (info.launcher, info.rank, info.world_size, info.local_rank, info.master_addr, info.master_port) == (
        "torch", 3, 8, 1, "n0", 29500)


def test_srun_derives_rank_master_and_port():
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4(x2)",
           "SLURM_JOB_NODELIST": "gpu[07-08,11]", "SLURM_JOB_ID": "123456"}
    info = resolve_launch(env, scontrol=None)
    assert (info.launcher, info.rank, info.world_size, info.local_rank, info.local_world_size) == ("slurm", 5, 8, 1, 4)
    assert info.master_addr == "gpu07"
    assert info.master_port == slurm_port("123456") == 15000 + 123456 % 20000


def test_scontrol_answer_is_preferred_for_the_first_host():
    assert first_host("weird[1-2]", scontrol=lambda nl: "weird1\nweird2\n") == "weird1"
    assert first_host("a,b", scontrol=None) == "a"
    assert first_host("single-node", scontrol=lambda nl: "") == "single-node"


def test_plain_process_is_a_world_of_one():
    info = resolve_launch({}, scontrol=None)
    assert (info.launcher, info.rank, info.world_size) == ("single", 0, 1)
    assert 0 < info.master_port < 65536


def test_incomplete_torch_environment_is_named():
    with pytest.raises(LaunchError, match="MASTER_ADDR"):
        resolve_launch({"RANK": "0", "WORLD_SIZE": "2"}, scontrol=None)
    with pytest.raises(LaunchError, match="SLURM_NTASKS=.x."):
        resolve_launch({"SLURM_PROCID": "0", "SLURM_NTASKS": "x", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "n"},
                       scontrol=None)
