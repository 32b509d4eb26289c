"""robomimic trains behaviour cloning with a frozen robrep encoder as its visual backbone (RobrepEncoderCore), on a
file `robrep collect` wrote, with robomimic's own config, algorithm and epoch loop."""

import numpy as np
import pytest
import torch

from robrep.data.collect import collect_demos
from robrep.encoders import load_encoder, save_checkpoint

ARCH = dict(input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("robomimic")
    demos = root / "reach.hdf5"
    collect_demos("reach", 4, demos, image_size=32, subset_sizes=(), subset_seeds=(), progress=False)
    torch.manual_seed(0)
    enc = root / "mae.pt"
    save_checkpoint(load_encoder("mae", **ARCH), enc)
    return demos, enc


def test_robomimic_bc_trains_an_epoch_on_a_frozen_robrep_encoder(files):
    import robomimic.utils.obs_utils as ObsUtils
    import robomimic.utils.train_utils as TrainUtils
    from robomimic.algo import algo_factory
    from robomimic.config import config_factory
    from robomimic.utils.dataset import SequenceDataset
    from torch.utils.data import DataLoader

    import policies.robomimic_core  # noqa: F401  (registers RobrepEncoderCore with robomimic)

    demos, enc = files
    config = config_factory("bc")
    with config.unlocked():
        config.observation.modalities.obs.rgb = ["image"]
        config.observation.modalities.obs.low_dim = ["proprio"]
        config.observation.encoder.rgb.core_class = "RobrepEncoderCore"
        config.observation.encoder.rgb.core_kwargs = {"encoder": "mae", "weights": str(enc), "readout": "spatial_softmax",
                                                      "feature_dimension": 16}
        config.observation.encoder.rgb.obs_randomizer_class = None
        config.train.seq_length = 1
        config.train.batch_size = 8
    ObsUtils.initialize_obs_utils_with_config(config)
    model = algo_factory(config.algo_name, config, obs_key_shapes={"image": [3, 32, 32], "proprio": [4]}, ac_dim=4,
                         device=torch.device("cpu"))
    core = model.nets["policy"].nets["encoder"].nets["obs"].obs_nets["image"]
    assert type(core).__name__ == "RobrepEncoderCore" and core.output_shape() == [16]
    frozen = {k: v.clone() for k, v in core.encoder.state_dict().items()}
    head_before = core.proj.weight.clone()
    data = SequenceDataset(hdf5_path=str(demos), obs_keys=("image", "proprio"), dataset_keys=("actions",),
                           load_next_obs=False, hdf5_cache_mode=None, seq_length=1)
    loader = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    log = TrainUtils.run_epoch(model=model, data_loader=loader, epoch=1, num_steps=6)
    assert np.isfinite(log["Loss"])
    assert all(torch.equal(v, core.encoder.state_dict()[k]) for k, v in frozen.items())  # the encoder stays frozen
    assert not torch.equal(head_before, core.proj.weight)  # readout + projection learn
    data.close_and_delete_hdf5_handle()
