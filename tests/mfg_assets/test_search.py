"""The recipe's defaults in the Dagster config are the trainer's: one place sets the product's recipe."""

from mfg_assets.search import RecipeConfig
from resources.models.train_settings import TrainSettings


def test_every_recipe_field_shared_with_train_settings_has_its_default() -> None:
    shared = set(RecipeConfig.model_fields) & set(TrainSettings.model_fields)
    assert {"label_smoothing", "ema_decay", "augment_strength", "balance", "backbone"} <= shared
    for name in shared - {"seed"}:  # the config's seed None means the dataset version's
        assert RecipeConfig.model_fields[name].default == TrainSettings.model_fields[name].default, name
