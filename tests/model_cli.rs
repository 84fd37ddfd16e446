//! `a2fseg model summary` end to end.

mod common;

/// `a2fseg model summary ARGS`, which must succeed: its stdout.
fn summary(args: &[&str]) -> String {
    let mut all = vec!["model", "summary"];
    all.extend_from_slice(args);
    String::from_utf8(common::a2fseg_ok(&all).stdout).unwrap()
}

/// `a2fseg model summary ARGS`, which must exit with status 1: its stderr.
fn summary_error(args: &[&str]) -> String {
    let mut all = vec!["model", "summary"];
    all.extend_from_slice(args);
    let (code, stderr) = common::a2fseg_error(&all);
    assert_eq!(code, Some(1), "{stderr}");
    stderr
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&summary(&all)).expect("summary --json prints one JSON object")
}

#[test]
fn paper_preset_counts() {
    let v = json(&["--preset", "paper"]);
    // 31,193,184 for the encoder and decoder (the authors' nnU-Net) + 2,400 for the five
    // deep-supervision heads (3 regions).
    assert_eq!(v["parameters_per_msfe_body"], 31_193_184);
    assert_eq!(v["parameters_per_msfe"], 31_195_584);
    let total = v["parameters_total"].as_u64().unwrap();
    assert!(
        total > 4 * 31_195_584 && total < 4 * 31_195_584 + 10_000,
        "{total}"
    );
    let macs = v["macs_by_modalities"].as_array().unwrap();
    assert_eq!(macs.len(), 4);
    assert!(macs[3]["macs"].as_u64().unwrap() > 4 * v["macs_per_msfe"].as_u64().unwrap());
    assert_eq!(
        v["config"]["patch_size"],
        serde_json::json!([128, 128, 128])
    );
}

#[test]
fn small_preset_and_overrides() {
    let small = json(&["--preset", "small"]);
    let hemis = json(&[
        "--preset", "small", "--fusion", "hemis", "--patch", "64,32,16",
    ]);
    assert_eq!(hemis["config"]["fusion"], "hemis");
    assert_eq!(hemis["parameters_attention"], 0);
    assert!(
        hemis["parameters_total"].as_u64().unwrap() < small["parameters_total"].as_u64().unwrap()
    );
    let text = summary(&["--preset", "small"]);
    assert!(text.contains("msfe.{m}.encoder.0.convs.0.conv"), "{text}");
    assert!(text.contains("4 modalities"));
}

#[test]
fn config_file_and_errors() {
    let dir = common::tempdir();
    let cfg = dir.path().join("config.json");
    let small = a2fseg::model::ModelConfig::preset("small").unwrap();
    std::fs::write(&cfg, small.to_json()).unwrap();
    let v = json(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(v["config"]["base_features"], 8);

    let err = summary_error(&["--preset", "tiny"]);
    assert!(err.contains("unknown model preset 'tiny'"), "{err}");
    let err = summary_error(&["--preset", "small", "--patch", "30"]);
    assert!(err.contains("multiple of 2^3 = 8"), "{err}");
    std::fs::write(&cfg, "{\"poolings\": 3}").unwrap();
    let err = summary_error(&["--config", cfg.to_str().unwrap()]);
    assert!(err.contains("config.json"), "{err}");
}

/// `--arch mfi`: the official model's parameters in use, and the text names MFI's parts.
#[test]
fn mfi_summary_counts() {
    let v = json(&["--arch", "mfi", "--preset", "paper"]);
    assert_eq!(v["parameters_total"], 30_918_521);
    assert_eq!(v["parameters_per_msfe"], 7_459_011);
    assert_eq!(v["config"]["arch"], "mfi");
    let text = summary(&["--arch", "mfi", "--preset", "small"]);
    assert!(text.starts_with("MFI: targets regions"), "{text}");
    assert!(
        text.contains("interaction blocks") && text.contains("group_norm"),
        "{text}"
    );
}

#[test]
fn mmformer_counts_and_text() {
    let v = json(&["--arch", "mmformer", "--preset", "paper"]);
    // The official 36,654,416 less four 1×1 convolutions its forward never uses (262,656).
    assert_eq!(v["parameters_total"], 36_391_760);
    assert_eq!(v["config"]["arch"], "mmformer");
    assert_eq!(v["config"]["mmformer"]["token_layout"], "intended");
    let text = summary(&["--arch", "mmformer", "--preset", "small"]);
    assert!(text.starts_with("mmFormer: targets classes"), "{text}");
    assert!(text.contains("64 tokens per modality (4×4×4)"), "{text}");
    assert!(text.contains("inter.layers.0"), "{text}");
}
