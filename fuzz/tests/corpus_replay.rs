//! Replays every committed corpus input through its target: the fuzz smoke of the test suite.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        run(&data);
        count += 1;
    }
    assert!(count > 0, "the corpus of {target} is empty");
}

#[test]
fn envelope_yaml_corpus() {
    replay("envelope_yaml", mailcred_fuzz::envelope::envelope_yaml);
}

#[test]
fn envelope_fields_corpus() {
    replay("envelope_fields", mailcred_fuzz::envelope::envelope_fields);
}
