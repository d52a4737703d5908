//! Writes the committed copies of the CRD. A test fails when they drift from the types.
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for target in ["crd/petset.yaml", "charts/petset-operator/files/petset.crd.yaml"] {
        let path = root.join(target);
        if path.parent().is_some_and(Path::exists) {
            std::fs::write(&path, petset_crd::crd_yaml())?;
            println!("wrote {target}");
        }
    }
    Ok(())
}
