//! Data-only validation cases: `testdata/validation/NAME.input.yaml` is a resource as a user
//! writes it, `NAME.golden.yaml` the violations `model::validate` must report.
//! `UPDATE_GOLDEN=1 cargo test -p model --test validation` rewrites the golden files.

use std::fs;
use std::path::Path;

use model::format::parse_documents;
use model::validate::validate;

fn render(input: &str) -> String {
    let resources = match parse_documents(input) {
        Ok(r) => r,
        Err(e) => return format!("format_error: {:?}\n", e.to_string()),
    };
    let mut out = String::new();
    for resource in resources {
        match validate(&resource) {
            Ok(()) => out.push_str("violations: []\n"),
            Err(e) => {
                out.push_str("violations:\n");
                for v in e.violations {
                    out.push_str(&format!(
                        "  - field: {:?}\n    message: {:?}\n",
                        v.field, v.message
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn validation_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/validation");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<_> = fs::read_dir(&dir)
        .expect("testdata/validation exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".input.yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "validation cases are missing");
    let mut failures = Vec::new();
    for input in inputs {
        let golden = input
            .to_string_lossy()
            .replace(".input.yaml", ".golden.yaml");
        let actual = render(&fs::read_to_string(&input).expect("read input"));
        if update {
            fs::write(&golden, &actual).expect("write golden");
            continue;
        }
        match fs::read_to_string(&golden) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                input.display()
            )),
            Err(_) => failures.push(format!("{golden} is missing")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run with UPDATE_GOLDEN=1 to accept the new output)",
        failures.join("\n")
    );
}
