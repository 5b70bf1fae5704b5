//! The crate carries its own copy of the WIT contract (`guest-sdk/wit/`), so
//! that it can be published; the copy must stay byte-identical to the
//! repository's `wit/` directory, which the host is built from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn the_crates_wit_is_identical_to_the_repositorys() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo_wit = crate_dir.join("../wit/since_v0.1.0");
    if !repo_wit.is_dir() {
        // Built from the published package, outside the repository.
        return;
    }
    let ours = files(&crate_dir.join("wit/since_v0.1.0"));
    let theirs = files(&repo_wit);
    assert!(!ours.is_empty());
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs), "the file lists differ");
    for (path, bytes) in &theirs {
        assert!(
            ours[path] == *bytes,
            "guest-sdk/wit/since_v0.1.0/{} differs from wit/since_v0.1.0/{0}; copy it over",
            path.display()
        );
    }
}
