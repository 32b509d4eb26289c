"""Imports the built-in encoder families and their pretraining objectives (registering them)."""

import robrep.encoders.clip  # noqa: F401
import robrep.encoders.dift  # noqa: F401
import robrep.encoders.mae  # noqa: F401
import robrep.encoders.voltron  # noqa: F401
import robrep.pretrain.contrastive  # noqa: F401
import robrep.pretrain.ddpm  # noqa: F401
import robrep.pretrain.mae  # noqa: F401
import robrep.pretrain.voltron  # noqa: F401
