"""EfficientSamProcessor: prompt nesting, per-axis rescaling, ragged padding, validation, saving and loading.

Property-based tests (hypothesis) cover rescaling round trips and ragged padding; end-to-end parity with the official
model is in test_processor_parity.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoProcessor

from efficientsam_hf.image_processing_efficientsam import EfficientSamImageProcessor
from efficientsam_hf.processing_efficientsam import EfficientSamProcessor

H, W = 30, 40  # the test image: height 30, width 40


@pytest.fixture(scope="module")
def processor() -> EfficientSamProcessor:
    return EfficientSamProcessor()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.RandomState(0).randint(0, 256, size=(H, W, 3), dtype=np.uint8)


def official_rescale(points: np.ndarray, height: int, width: int) -> torch.Tensor:
    """The official `get_rescaled_pts` on float32 points."""
    p = torch.from_numpy(np.asarray(points, dtype=np.float32))
    x = torch.where(p[..., 0] >= 0, p[..., 0] * 1024 / width, -1.0)
    y = torch.where(p[..., 1] >= 0, p[..., 1] * 1024 / height, -1.0)
    return torch.stack([x, y], dim=-1)


# ---------------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------------
def test_points_and_labels(processor, image):
    points = [[[[10.5, 20.25], [3, 4]], [[39, 29], [0, 0]]]]
    out = processor(image, input_points=points, input_labels=[[[1, 0], [1, 1]]])
    assert set(out) == {"pixel_values", "original_sizes", "reshaped_input_sizes", "input_points", "input_labels"}
    assert out["input_points"].shape == (1, 2, 2, 2) and out["input_points"].dtype == torch.float32
    assert out["input_labels"].tolist() == [[[1, 0], [1, 1]]] and out["input_labels"].dtype == torch.int64
    assert torch.equal(out["input_points"], official_rescale(points, H, W))  # bit for bit
    assert torch.equal(out["pixel_values"], processor.image_processor(image)["pixel_values"])


def test_per_axis_rescaling(processor, image):
    out = processor(image, input_points=[[[[W, H], [W / 2, H / 4]]]])
    assert out["input_points"].tolist() == [[[[1024.0, 1024.0], [512.0, 256.0]]]]


def test_depth_three_points_are_one_query(processor, image):
    # SamProcessor's [image][point][xy] form: one query with all the points
    out = processor(image, input_points=[[[1, 2], [3, 4]]], input_labels=[[1, 0]])
    assert out["input_points"].shape == (1, 1, 2, 2) and out["input_labels"].tolist() == [[[1, 0]]]


def test_default_labels(processor, image):
    out = processor(image, input_points=[[[[1, 2], [-1, -1]], [[5, 5], [6, 6]]]])
    assert out["input_labels"].tolist() == [[[1, -1], [1, 1]]]
    assert out["input_points"][0, 0, 1].tolist() == [-1.0, -1.0]


def test_padding_points_stay_minus_one(processor, image):
    out = processor(image, input_points=[[[[1, 2], [-1, -1]]]], input_labels=[[[1, -1]]])
    assert out["input_points"][0, 0, 1].tolist() == [-1.0, -1.0]
    assert out["input_labels"].tolist() == [[[1, -1]]]


def test_boxes(processor, image):
    out = processor(image, input_boxes=[[[0, 0, W, H], [4, 3, 20, 15.5]]])
    assert out["input_boxes"].shape == (1, 2, 4) and out["input_boxes"].dtype == torch.float32
    corners = np.array([[0, 0], [W, H], [4, 3], [20, 15.5]], dtype=np.float32)
    assert torch.equal(out["input_boxes"][0].reshape(-1, 2), official_rescale(corners, H, W))
    assert "input_points" not in out and "input_labels" not in out


def test_points_and_boxes_share_queries(processor, image):
    out = processor(image, input_points=[[[[5, 5]], [[6, 7]]]], input_boxes=[[[1, 1, 10, 10], [2, 2, 20, 20]]])
    assert out["input_points"].shape == (1, 2, 1, 2) and out["input_boxes"].shape == (1, 2, 4)
    with pytest.raises(ValueError, match="same number of queries"):
        processor(image, input_points=[[[[5, 5]]]], input_boxes=[[[1, 1, 10, 10], [2, 2, 20, 20]]])


def test_tensor_and_array_prompts(processor, image):
    nested = [[[[10.5, 20.25], [3, 4]]]]
    expected = processor(image, input_points=nested, input_labels=[[[1, 0]]])
    for points in (np.array(nested), torch.tensor(nested), [torch.tensor(nested[0])]):
        out = processor(image, input_points=points, input_labels=torch.tensor([[[1, 0]]]))
        assert torch.equal(out["input_points"], expected["input_points"])
        assert torch.equal(out["input_labels"], expected["input_labels"])
    boxes = processor(image, input_boxes=torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]))["input_boxes"]
    assert torch.equal(boxes, processor(image, input_boxes=[[[1, 2, 3, 4]]])["input_boxes"])


def test_batch_with_different_image_sizes(processor, image):
    other = np.zeros((100, 50, 3), dtype=np.uint8)
    out = processor([image, other], input_points=[[[[W, H]]], [[[50, 100]]]])
    assert out["original_sizes"].tolist() == [[H, W], [100, 50]]
    assert out["input_points"].tolist() == [[[[1024.0, 1024.0]]], [[[1024.0, 1024.0]]]]


def test_ragged_batches_are_padded(processor, image):
    other = np.zeros((60, 80, 3), dtype=np.uint8)
    points = [
        [[[1, 1], [2, 2], [3, 3]], [[4, 4]]],  # image 0: two queries of 3 and 1 points
        [[[5, 5]]],  # image 1: one query of 1 point
    ]
    labels = [[[1, 0, 1], [0]], [[1]]]
    out = processor([image, other], input_points=points, input_labels=labels)
    assert out["input_points"].shape == (2, 2, 3, 2)
    assert out["input_labels"].tolist() == [[[1, 0, 1], [0, -1, -1]], [[1, -1, -1], [-1, -1, -1]]]
    pad = out["input_labels"] == -1
    assert bool((out["input_points"][pad] == -1).all())
    assert torch.equal(out["input_points"][0, 0], official_rescale([[1, 1], [2, 2], [3, 3]], H, W))
    assert torch.equal(out["input_points"][1, 0, 0], official_rescale([5, 5], 60, 80))

    boxes = processor([image, other], input_boxes=[[[1, 1, 5, 5], [2, 2, 6, 6]], [[3, 3, 7, 7]]])["input_boxes"]
    assert boxes.shape == (2, 2, 4) and boxes[1, 1].tolist() == [-1.0, -1.0, -1.0, -1.0]


def test_prompts_without_images(processor, image):
    with_images = processor(image, input_points=[[[[3, 4]]]], input_boxes=[[[1, 2, 3, 4]]])
    without = processor(original_sizes=[(H, W)], input_points=[[[[3, 4]]]], input_boxes=[[[1, 2, 3, 4]]])
    assert "pixel_values" not in without
    for key in ("original_sizes", "reshaped_input_sizes", "input_points", "input_labels", "input_boxes"):
        assert torch.equal(without[key], with_images[key])
    direct = processor.prepare_prompts(torch.tensor([[H, W]]), input_points=[[[[3, 4]]]])
    assert torch.equal(direct["input_points"], with_images["input_points"])
    with pytest.raises(ValueError, match="images"):
        processor(input_points=[[[[3, 4]]]])


def test_numpy_output(processor, image):
    out = processor(image, input_points=[[[[3, 4]]]], input_boxes=[[[1, 2, 3, 4]]], return_tensors="np")
    assert all(isinstance(v, np.ndarray) for v in out.values())
    assert out["input_points"].dtype == np.float32 and out["input_labels"].dtype == np.int64
    with pytest.raises(ValueError, match="return_tensors"):
        processor(image, return_tensors="jax")


def test_post_process_masks_delegates(processor):
    logits = torch.randn(1, 1, 3, 256, 256)
    ours = processor.post_process_masks(logits, torch.tensor([[H, W]]), binarize=False)
    assert torch.equal(ours[0], processor.image_processor.post_process_masks(logits, [[H, W]], binarize=False)[0])


def test_model_input_names(processor):
    assert processor.model_input_names == ["pixel_values", "original_sizes", "reshaped_input_sizes"]


def test_end_to_end_with_tiny_model(processor, tiny_model, image):
    other = np.zeros((50, 20, 3), dtype=np.uint8)
    inputs = processor(
        [image, other],
        input_points=[[[[5, 6], [7, 8]], [[1, 1]]], [[[10, 40]]]],
        input_labels=[[[1, 0], [1]], [[1]]],
    )
    with torch.no_grad():
        outputs = tiny_model(**inputs)  # as with SamProcessor: the whole output goes into the model
    assert outputs.pred_masks.shape == (2, 2, 3, 256, 256)
    masks = processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    assert [m.shape for m in masks] == [(2, 3, H, W), (2, 3, 50, 20)]


# ---------------------------------------------------------------------------------------------------------------------
# Validation: every mistake is an error naming the argument
# ---------------------------------------------------------------------------------------------------------------------
BAD_PROMPTS = [
    # (kwargs, exception, message fragment)
    ({"input_points": [[[[float("nan"), 1]]]]}, ValueError, "input_points.*NaN"),
    ({"input_points": [[[[1, float("inf")]]]]}, ValueError, "input_points.*infinite"),
    ({"input_points": [[[[W + 0.5, 1]]]]}, ValueError, "input_points.*outside"),
    ({"input_points": [[[[1, H + 1]]]]}, ValueError, "input_points.*outside"),
    ({"input_points": [[[[-0.5, 1]]]]}, ValueError, "input_points.*outside"),
    ({"input_points": [[[[-1, -1]]]], "input_labels": [[[1]]]}, ValueError, "input_points.*outside"),
    ({"input_points": [[[[5, 5]]]], "input_labels": [[[-1]]]}, ValueError, "label -1.*\\(-1, -1\\)"),
    ({"input_points": [[[[5, 5]]]], "input_labels": [[[4]]]}, ValueError, "input_labels.*outside"),
    ({"input_points": [[[[5, 5]]]], "input_labels": [[[0.5]]]}, ValueError, "input_labels.*outside"),
    ({"input_points": [[[[5, 5], [6, 6]]]], "input_labels": [[[1]]]}, ValueError, "input_labels.*one label per"),
    ({"input_points": [[[[5, 5]], [[6, 6]]]], "input_labels": [[[1]]]}, ValueError, "input_labels\\[0\\].*queries"),
    ({"input_points": [[[[5, 5]]]], "input_labels": [[1]]}, ValueError, "input_labels.*nested"),
    ({"input_labels": [[[1]]]}, ValueError, "input_labels.*without input_points"),
    ({"input_points": [[[[5, 5]]], [[[6, 6]]]]}, ValueError, "input_points.*2 prompt lists for 1 images"),
    ({"input_boxes": [[[1, 1, 2, 2]], [[1, 1, 2, 2]]]}, ValueError, "input_boxes.*2 box lists for 1 images"),
    ({"input_points": []}, ValueError, "input_points is empty"),
    ({"input_points": [[]]}, ValueError, "input_points\\[0\\] is empty"),
    ({"input_points": [[[]]]}, ValueError, "input_points\\[0\\]\\[0\\] is empty"),
    ({"input_boxes": [[]]}, ValueError, "input_boxes\\[0\\] is empty"),
    ({"input_points": [[5, 5]]}, ValueError, "input_points.*depth 2"),
    ({"input_points": [[[[[5, 5]]]]]}, ValueError, "input_points.*depth 5"),
    ({"input_points": [[[[5, 5]], [5, 5]]]}, ValueError, "inconsistent nesting"),
    ({"input_points": [[[[5, 5, 5]]]]}, ValueError, "input_points.*\\(x, y\\)"),
    ({"input_points": torch.zeros(1, 2)}, ValueError, "input_points.*depth 2"),
    ({"input_points": [[[["a", 5]]]]}, TypeError, "input_points.*numbers"),
    ({"input_points": [[[[True, 5]]]]}, TypeError, "input_points.*numbers"),
    ({"input_points": 5}, ValueError, "input_points.*nested"),
    ({"input_boxes": [[[1, 1, 2]]]}, ValueError, "input_boxes.*x0, y0, x1, y1"),
    ({"input_boxes": [[1, 1, 2, 2]]}, ValueError, "input_boxes.*depth 2"),
    ({"input_boxes": [[[[1, 1, 2, 2]]]]}, ValueError, "input_boxes.*depth 4"),
    ({"input_boxes": [[[5, 1, 2, 3]]]}, ValueError, "input_boxes.*x0 <= x1"),
    ({"input_boxes": [[[1, 5, 2, 3]]]}, ValueError, "input_boxes.*y0 <= y1"),
    ({"input_boxes": [[[1, 1, W + 1, 3]]]}, ValueError, "input_boxes.*outside"),
    ({"input_boxes": [[[-1, -1, -1, -1]]]}, ValueError, "input_boxes.*outside"),
    ({"input_boxes": [[[1, 1, float("nan"), 3]]]}, ValueError, "input_boxes.*NaN"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_PROMPTS)
def test_invalid_prompts(processor, image, kwargs, error, match):
    with pytest.raises(error, match=match):
        processor(image, **kwargs)
    with pytest.raises(error, match=match):  # the same checks without images
        processor(original_sizes=[(H, W)], **kwargs)


def test_image_borders_are_inside(processor, image):
    out = processor(image, input_points=[[[[0, 0], [W, H]]]], input_boxes=[[[0, 0, W, H]]])
    assert out["input_points"].tolist() == [[[[0.0, 0.0], [1024.0, 1024.0]]]]
    assert out["input_boxes"].tolist() == [[[0.0, 0.0, 1024.0, 1024.0]]]


def test_number_of_images_and_prompt_lists(processor, image):
    with pytest.raises(ValueError, match="1 prompt lists for 2 images"):
        processor([image, image], input_points=[[[[5, 5]]]])
    with pytest.raises(ValueError, match="original_sizes"):
        processor(original_sizes=[(0, 5)], input_points=[[[[0, 0]]]])


# ---------------------------------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------------------------------
def test_save_and_load(tmp_path):
    processor = EfficientSamProcessor(EfficientSamImageProcessor(do_normalize=False))
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["processor_class"] == "EfficientSamProcessor"
    assert config["image_processor"]["image_processor_type"] == "EfficientSamImageProcessor"
    assert config["image_processor"]["do_normalize"] is False
    for loaded in (EfficientSamProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, EfficientSamProcessor)
        assert loaded.image_processor.to_dict() == processor.image_processor.to_dict()


def test_remote_code_folder_needs_only_transformers(tmp_path):
    """The saved folder carries both processor files; they load and run without this package importable."""
    EfficientSamProcessor().save_pretrained(tmp_path / "folder")
    assert {"processing_efficientsam.py", "image_processing_efficientsam.py"} <= set(os.listdir(tmp_path / "folder"))
    script = textwrap.dedent(
        f"""
        import sys

        class HidePackage:  # however the package is installed, it cannot be imported here
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "efficientsam_hf":
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, HidePackage())
        try:
            import efficientsam_hf
            raise SystemExit("efficientsam_hf should not be importable here")
        except ImportError:
            pass
        import numpy as np
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path / "folder")!r}, trust_remote_code=True)
        out = processor(np.zeros((20, 40, 3), np.uint8), input_points=[[[[10, 5]]]])
        assert out["input_points"].tolist() == [[[[256.0, 256.0]]]], out["input_points"]
        assert out["pixel_values"].shape == (1, 3, 1024, 1024)
        print("ok", type(processor).__module__)
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok transformers_modules" in result.stdout


# ---------------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------------
sizes = st.tuples(st.integers(1, 4000), st.integers(1, 4000))


@st.composite
def image_and_points(draw):
    height, width = draw(sizes)
    n = draw(st.integers(1, 6))
    fx = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    fy = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    points = [[x * width, y * height] for x, y in zip(fx, fy)]
    return (height, width), points


@settings(max_examples=50, deadline=None)
@given(image_and_points())
def test_rescaling_round_trip_and_per_axis(case):
    size, points = case
    processor = EfficientSamProcessor()
    height, width = size
    out = processor(original_sizes=[size], input_points=[[points]])["input_points"][0, 0].double()
    original = torch.tensor(points, dtype=torch.float32).double()
    # exact official arithmetic, inside the 1024 frame
    assert torch.equal(out.float(), official_rescale(np.array(points), height, width))
    assert bool(((out >= 0) & (out <= 1024)).all())
    # round trip back to pixels, within float32 rounding
    back = torch.stack([out[:, 0] * width / 1024, out[:, 1] * height / 1024], dim=-1)
    assert torch.allclose(back, original, rtol=1e-6, atol=1e-6 * max(height, width))
    # per axis: x depends on the width only, y on the height only
    taller = processor(original_sizes=[(height * 2, width)], input_points=[[points]])["input_points"][0, 0]
    doubled = torch.tensor([[x, 2 * y] for x, y in points], dtype=torch.float32)
    taller_doubled = processor(original_sizes=[(height * 2, width)], input_points=[[doubled.tolist()]])
    assert torch.equal(taller[:, 0], out[:, 0].float())
    assert torch.equal(taller_doubled["input_points"][0, 0, :, 1], out[:, 1].float())  # scaling by 2 is exact


@settings(max_examples=50, deadline=None)
@given(image_and_points())
def test_box_rescaling_matches_point_rescaling(case):
    size, points = case
    processor = EfficientSamProcessor()
    xs = sorted(p[0] for p in points[:2] * 2)[:2]
    ys = sorted(p[1] for p in points[:2] * 2)[:2]
    box = [xs[0], ys[0], xs[-1], ys[-1]]
    boxes = processor(original_sizes=[size], input_boxes=[[box]])["input_boxes"][0, 0]
    corners = processor(original_sizes=[size], input_points=[[[box[:2], box[2:]]]])["input_points"][0, 0]
    assert torch.equal(boxes, corners.reshape(4))


@st.composite
def ragged_prompts(draw):
    n_images = draw(st.integers(1, 3))
    image_sizes, points, labels = [], [], []
    for _ in range(n_images):
        height, width = draw(st.tuples(st.integers(1, 500), st.integers(1, 500)))
        image_sizes.append((height, width))
        n_queries = draw(st.integers(1, 4))
        image_points, image_labels = [], []
        for _ in range(n_queries):
            n_points = draw(st.integers(1, 5))
            image_points.append([[draw(st.floats(0, width)), draw(st.floats(0, height))] for _ in range(n_points)])
            image_labels.append([draw(st.sampled_from([0, 1, 2, 3])) for _ in range(n_points)])
        points.append(image_points)
        labels.append(image_labels)
    return image_sizes, points, labels


@settings(max_examples=50, deadline=None)
@given(ragged_prompts())
def test_ragged_padding(prompts):
    image_sizes, points, labels = prompts
    out = EfficientSamProcessor()(original_sizes=image_sizes, input_points=points, input_labels=labels)
    n_queries = max(len(p) for p in points)
    n_points = max(len(q) for p in points for q in p)
    assert out["input_points"].shape == (len(points), n_queries, n_points, 2)
    assert out["input_labels"].shape == (len(points), n_queries, n_points)
    real = torch.zeros(out["input_labels"].shape, dtype=torch.bool)
    for b, (height, width) in enumerate(image_sizes):
        for q, (query_points, query_labels) in enumerate(zip(points[b], labels[b])):
            n = len(query_points)
            real[b, q, :n] = True
            assert out["input_labels"][b, q, :n].tolist() == query_labels  # originals preserved
            assert torch.equal(out["input_points"][b, q, :n], official_rescale(np.array(query_points), height, width))
    assert bool((out["input_labels"][~real] == -1).all())  # everything else is padding
    assert bool((out["input_points"][~real] == -1).all())
    assert bool((out["input_points"][real] >= 0).all())
    assert math.isclose(float(real.sum()), sum(len(q) for p in points for q in p))
