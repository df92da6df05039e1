"""The output layout: every path of a run, from one place."""

from segpipe.layout import Layout, output_name, shard_output_paths


def test_output_paths_are_distinct_for_names_that_used_to_collide():
    # "c.png" and "c.png.png/i.png" both mapped to masks/.../c.png.png(/...) before.
    ids = ["c.png", "c.png.png/i.png", "C.png", "a b.png", "a_b.png", "x/c.png"]
    paths = shard_output_paths(Layout("results").masks("m", "000001"), ids)
    assert len(set(paths.values())) == len(ids)
    assert all(p.startswith("results/masks/m/000001/") and p.count("/") == 4 for p in paths.values())


def test_output_names_stay_short_for_names_at_the_file_system_limit():
    for image_id in ["a" * 251 + ".png", "d/" + "é" * 125 + ".tif", "new\nline.png"]:
        name = output_name(123456, image_id)
        assert len(name.encode()) < 100 and "/" not in name and "\n" not in name
        name.encode("utf-8")  # whole characters only




def test_wildcard_patterns_and_job_paths_agree():
    layout = Layout("out/results")
    for name in ("metrics", "objects", "instances"):
        pattern = getattr(layout, name)()
        assert pattern == f"out/results/{name}/{{method}}/{{shard}}.parquet"
        assert getattr(layout, name)("otsu", "000002") == pattern.format(method="otsu", shard="000002")
    assert layout.masks("otsu", "000002") == "out/results/masks/otsu/000002"
    assert layout.coco_ap("m") == "out/results/evaluation/m.coco_ap.json"
    assert layout.manifest == "out/results/manifest/images.parquet"
    assert layout.shard_file("000004") == "out/results/manifest/shards/000004.json"


def test_shard_outputs_cover_every_per_shard_output():
    layout = Layout("r")
    outputs = layout.shard_outputs("m", "000001")
    assert outputs == [layout.masks("m", "000001"), layout.edges("m", "000001"),
                       layout.metrics("m", "000001"), layout.instances("m", "000001"),
                       layout.objects("m", "000001")]
