"""The `tfds:` data specs of every app, read through `tfds.testing.mock_data` (random examples with the
data set's real features and splits, no network): what a user with internet gets after the download."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def mock():
    with tfds.testing.mock_data(num_examples=6):
        yield


@pytest.mark.parametrize("name", ["imdb_reviews", "glue/sst2"])
def test_sentiment_tfds_specs_give_labelled_texts_with_the_official_test_split(name, mock):
    from seqapps.sentiment import data
    from seqapps.sentiment.app import SentimentApp

    ds = data.load(dataclasses.replace(SentimentApp().tiny_config(), data=f"tfds:{name}"))
    assert len(ds.texts) == 12 and all(isinstance(t, str) for t in ds.texts)
    assert set(ds.labels) <= {"negative", "positive"}
    assert ds.split == ["train"] * 6 + ["test"] * 6  # the data set's own test (SST-2: validation) split is held out
    with pytest.raises(ValueError, match="tfds:ag_news is not supported; use tfds:imdb_reviews or tfds:glue/sst2"):
        data.load(dataclasses.replace(SentimentApp().tiny_config(), data="tfds:ag_news"))


def test_translate_tfds_spec_gives_pairs_in_the_configured_direction(mock):
    from seqapps.translate import data
    from seqapps.translate.app import TranslateApp

    cfg = dataclasses.replace(TranslateApp().tiny_config(), data="tfds:ted_hrlr_translate/pt_to_en", direction="pt->en")
    corp = data.load_corpus(cfg)
    every = len(tfds.load("ted_hrlr_translate/pt_to_en", split="train+validation+test"))  # all splits are read
    assert len(corp.pairs) == every > 5 and all(isinstance(s, str) and isinstance(t, str) for s, t in corp.pairs)
    back = data.load_corpus(dataclasses.replace(cfg, direction="en->pt"))
    assert [(t, s) for s, t in back.pairs] == corp.pairs
    assert len(data.load_corpus(dataclasses.replace(cfg, max_examples=5)).pairs) == 5
    with pytest.raises(ValueError, match=r"has fields \['en', 'pt'\]; set direction to two of them"):
        data.load_corpus(dataclasses.replace(cfg, direction="spa->eng"))


def test_speech_tfds_spec_gives_one_second_clips_with_the_official_splits(mock):
    from seqapps.speech import data
    from seqapps.speech.app import SpeechApp

    clips = data.load("tfds:speech_commands", dataclasses.replace(SpeechApp().tiny_config(), max_examples=4))
    assert clips.waveforms.shape == (12, 16000) and clips.waveforms.dtype == np.float32
    assert clips.split == ["train"] * 4 + ["val"] * 4 + ["test"] * 4
    names = tfds.builder("speech_commands").info.features["label"].names
    assert set(clips.words) <= set(names) and "_silence_" in names


def _reviews_of_their_split(self, split, **kwargs):
    """Mock imdb_reviews whose texts differ between splits, as real ones do: tfds's mock repeats the same
    examples in every split, and a training copy of an official test text is left out of training."""
    rng = np.random.default_rng(0 if str(split) == "train" else 1)
    words = ["good", "bad", "film", "plot", "great", "awful", "actor", "boring", "fun", "dull"]
    texts = [f"{split} {i} " + " ".join(rng.choice(words, 12)) for i in range(60)]
    return tf.data.Dataset.from_tensor_slices({"text": texts, "label": np.arange(60, dtype=np.int64) % 2})


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, spec, sets",
    [
        ("sentiment", "tfds:imdb_reviews", {}),
        ("translate", "tfds:ted_hrlr_translate/pt_to_en", {"direction": "pt->en"}),
        ("speech", "tfds:speech_commands", {}),
    ],
)
def test_each_app_trains_and_exports_from_its_tfds_spec(name, spec, sets, tmp_path):
    from seqapps import registry

    app = registry.get_app(name)
    as_dataset = _reviews_of_their_split if name == "sentiment" else None
    with tfds.testing.mock_data(num_examples=60, as_dataset_fn=as_dataset):
        app.train(dataclasses.replace(app.tiny_config(), data=spec, verbose=0, **sets), tmp_path / name)
    for artifact in ("saved_model", "model.tflite", "metadata.json"):
        assert (tmp_path / name / artifact).exists(), artifact
