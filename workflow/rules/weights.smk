# Runs on the submitting machine (localrule), which has the network when any machine
# does; segment jobs then read the weights from resources/weights only. A failed
# download is recorded, not fatal: the other methods finish and the run says what to do.
# A failed download is tried again at the next run (its retry parameter changes), and the
# run ends by saying what to do again, until the file is there.
rule fetch_maskrcnn_weights:
    output:
        weights_path("{file}.status.json"),
    log:
        log_path("fetch_maskrcnn_weights", "{file}.log"),
    localrule: True
    conda:
        "../../envs/maskrcnn.yaml"
    params:
        url=get_weights_url,
        path=get_weights_path,
        retry=get_weights_retry,
    script:
        "../scripts/fetch_maskrcnn_weights.py"
