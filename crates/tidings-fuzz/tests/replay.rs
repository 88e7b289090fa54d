//! Replays every committed corpus file (`fuzz/corpus/<target>/`) through its target, so the
//! normal test command checks in seconds what fuzzing found, and that fixed bugs stay fixed.

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let corpora = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in tidings_fuzz::TARGETS {
        let dir = corpora.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file");
            // A panic names the file, so that it can be run alone.
            eprintln!("{name}: {}", file.display());
            target(&data);
        }
    }
}
