import hashlib
import json

import pytest
import torch

from segpipe.errors import ConfigError
from segpipe.maskrcnn.weights import (
    KNOWN_WEIGHTS,
    fetch_weights,
    missing_weights_message,
    read_status,
    refresh_status,
    resolve_weights,
)


def test_known_weights_match_torchvision():
    from torchvision.models.detection import (
        MaskRCNN_ResNet50_FPN_V2_Weights,
        MaskRCNN_ResNet50_FPN_Weights,
    )

    enums = {"maskrcnn_resnet50_fpn": MaskRCNN_ResNet50_FPN_Weights,
             "maskrcnn_resnet50_fpn_v2": MaskRCNN_ResNet50_FPN_V2_Weights}
    for model, enum in enums.items():
        assert KNOWN_WEIGHTS[model] == {name: enum[name].url for name in enum.__members__}


def test_resolve_names_paths_and_none():
    named = resolve_weights("maskrcnn_resnet50_fpn_v2", "DEFAULT", weights_dir="w")
    assert named.kind == "named"
    assert named.path == "w/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    assert named.status_path == named.path + ".status.json"
    assert resolve_weights("maskrcnn_resnet50_fpn", "ckpt/model.pth").kind == "path"
    assert resolve_weights("maskrcnn_resnet50_fpn", "none").kind == "none"
    with pytest.raises(ConfigError, match="COCO_V1") as info:
        resolve_weights("maskrcnn_resnet50_fpn", "IMAGENET", key="methods.m.weights")
    assert info.value.key == "methods.m.weights"


def test_mirror_url(monkeypatch):
    monkeypatch.setenv("SEGPIPE_WEIGHTS_URL_BASE", "http://mirror.local/models/")
    source = resolve_weights("maskrcnn_resnet50_fpn_v2", "COCO_V1")
    assert source.url == "http://mirror.local/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"


def test_a_file_placed_in_advance_is_used_without_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    target = tmp_path / "w.pth"
    target.write_bytes(b"weights")
    status = fetch_weights("https://example.org/w.pth", target, status_out=tmp_path / "s.json")
    assert status["ok"] and read_status(tmp_path / "s.json") == status
    assert target.read_bytes() == b"weights"


def hashed_checkpoint(folder, tensor_value=1.0):
    """A state dict saved under a name carrying its SHA-256 prefix, as torchvision names them."""
    raw = folder / "raw.pth"
    torch.save({"w": torch.tensor([tensor_value])}, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    named = folder / f"model-{digest}.pth"
    raw.rename(named)
    return named


def test_download_goes_through_torchs_hash_check(tmp_path):
    source = hashed_checkpoint(tmp_path)
    dest = tmp_path / "weights" / source.name
    status = fetch_weights(source.as_uri(), dest, status_out=tmp_path / "s.json")
    assert status["ok"] and dest.read_bytes() == source.read_bytes()
    # a file whose content does not match the hash in its name is refused and removed
    wrong = tmp_path / "weights" / "other-deadbeef.pth"
    status = fetch_weights(source.as_uri(), wrong, status_out=tmp_path / "s2.json")
    assert not status["ok"] and "hash" in status["error"].lower()
    assert not wrong.exists()


def test_failing_download_is_recorded_with_what_to_do(tmp_path):
    dest = tmp_path / "weights" / "m-12345678.pth"
    # port 9 (discard) on localhost: refused at once, no network needed
    status = fetch_weights("http://127.0.0.1:9/m-12345678.pth", dest,
                           status_out=tmp_path / "s.json", timeout_s=5)
    assert not status["ok"] and status["error"]
    message = missing_weights_message(status)
    assert "http://127.0.0.1:9/m-12345678.pth" in message and str(dest) in message
    assert json.loads((tmp_path / "s.json").read_text())["ok"] is False


def test_records_follow_the_folder(tmp_path):
    source = resolve_weights("maskrcnn_resnet50_fpn", "DEFAULT", weights_dir=str(tmp_path))
    status = {"ok": False, "path": source.path, "url": source.url, "error": "offline"}
    (tmp_path / (source.path.split("/")[-1] + ".status.json")).write_text(json.dumps(status))
    assert not refresh_status(source)  # still missing: the record stands
    (tmp_path / source.path.split("/")[-1]).write_bytes(b"placed by hand")
    assert refresh_status(source)  # now present: recorded as found
    assert read_status(source.status_path)["ok"] is True
    assert not refresh_status(source)
    (tmp_path / source.path.split("/")[-1]).unlink()
    assert refresh_status(source)  # gone again: the record goes, the fetch runs again
    assert read_status(source.status_path) is None
