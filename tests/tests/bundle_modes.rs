//! File modes through the materializer (contract 0.2.1): the bundle plugin makes a file executable
//! when its tar header says so (never setuid/setgid/sticky) through the host's `modes`; a hostile
//! materializer cannot chmod anything but the regular files it wrote; and a materializer built
//! against the frozen 0.2.0 contract (no `modes` import) still loads and runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aac_host::outcome::FailureKind;
use aac_host::plugin::{Bundle, Integrity, MaterializeOptions, World};
use aac_host::runner::session::plugin_bundle;
use aac_tests::bundle::{Entry, archive, manifest_for, save};
use aac_tests::{plugin, test_host};

fn mode(path: &Path) -> u32 {
    path.symlink_metadata().unwrap().permissions().mode() & 0o7777
}

fn archive_bundle(dir: &Path, entries: &[Entry]) -> Bundle {
    let bytes = archive(&manifest_for(entries), entries);
    plugin_bundle(&save(dir, "bundle.tar", &bytes))
}

#[tokio::test]
async fn the_executable_bit_of_a_bundle_file_arrives_and_nothing_more() {
    let host = test_host(None);
    let bundle = host
        .load_materializer(&plugin("bundle"), &Integrity::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let entries = [
        Entry::FileWithMode(
            "run-tests.sh".into(),
            b"#!/bin/sh\necho ok\n".to_vec(),
            0o755,
        ),
        Entry::FileWithMode("bin/tool".into(), b"#!/bin/sh\n".to_vec(), 0o700),
        // setuid, setgid and sticky in the header: only the execute bit survives.
        Entry::FileWithMode("bin/suid".into(), b"#!/bin/sh\n".to_vec(), 0o7777),
        Entry::FileWithMode("notes.txt".into(), b"plain\n".to_vec(), 0o644),
        Entry::FileWithMode("private.txt".into(), b"plain\n".to_vec(), 0o4600),
        Entry::file("README.md", "# r\n"),
    ];
    let workspace = dir.path().join("ws");
    let summary = bundle
        .materialize(
            &archive_bundle(dir.path(), &entries),
            &workspace,
            &MaterializeOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(summary.files, 7, "6 files and bin/");
    assert_eq!(mode(&workspace.join("run-tests.sh")), 0o755);
    assert_eq!(mode(&workspace.join("bin/tool")), 0o755);
    assert_eq!(mode(&workspace.join("bin/suid")), 0o755);
    for plain in ["notes.txt", "private.txt", "README.md"] {
        assert_eq!(
            mode(&workspace.join(plain)) & 0o7111,
            0,
            "{plain} is not executable and has no special bits"
        );
    }
}

/// A materializer asking the host to chmod outside the files it wrote is refused path by path,
/// and the file beside the workspace it aimed at is unchanged.
#[tokio::test]
async fn a_hostile_materializer_cannot_chmod_outside_its_own_files() {
    let host = test_host(None);
    let touch = host
        .load_materializer(&plugin("test-touch-materializer"), &Integrity::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hostile = Bundle {
        kind: "http".into(),
        location: "hostile:chmod".into(),
        sha256: None,
        size: None,
    };
    let failure = touch
        .materialize(&hostile, &workspace, &MaterializeOptions::default())
        .await
        .unwrap_err();
    let message = &failure.message;
    assert_eq!(failure.kind, FailureKind::ResourceBundle, "{message}");
    assert!(!message.contains("LEAK"), "{message}");
    for (path, why) in [
        ("../victim", "`..` is not allowed"),
        ("/etc/passwd", "an absolute path"),
        ("/workspace/inside", "an absolute path"),
        ("link", "a symbolic link is on the path"),
        ("up/victim", "a symbolic link is on the path"),
        ("d", "not a regular file"),
        ("missing", "no such file"),
    ] {
        assert!(
            message.contains(&format!(
                "denied {path} (cannot set the mode of `{path}`: {why}"
            )),
            "{path}: {message}"
        );
    }
    // The host does let it set the mode of a file it wrote itself.
    assert!(message.contains("set inside"), "{message}");
    assert_eq!(
        mode(&victim),
        0o600,
        "the file beside the workspace kept its mode"
    );
    assert_eq!(std::fs::read_dir(&workspace).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no staging directory left"
    );
}

/// 0.2.1 is additive: a component built from the 0.2.0 WIT imports `log@0.2.0` and
/// `archive@0.2.0`, exports `materialize@0.2.0`, and links against the 0.2.1 host as it is.
#[tokio::test]
async fn a_materializer_built_for_0_2_0_still_loads_and_materializes() {
    let host = test_host(None);
    let path = plugin("test-materializer-v0-2-0");
    let inspection = host.inspect(&path).await.unwrap();
    assert_eq!(inspection.shape.world, World::Materializer);
    assert_eq!(inspection.shape.wit_version, "0.2.0");
    assert!(
        inspection
            .shape
            .imports
            .iter()
            .any(|i| i == "aac:plugin/archive@0.2.0"),
        "{:?}",
        inspection.shape.imports
    );
    assert!(
        !inspection.shape.imports.iter().any(|i| i.contains("modes")),
        "{:?}",
        inspection.shape.imports
    );
    let frozen = host
        .load_materializer(&path, &Integrity::default())
        .await
        .expect("a 0.2.0 materializer loads on the 0.2.1 host");
    let dir = tempfile::tempdir().unwrap();
    let bundle = archive_bundle(dir.path(), &[Entry::file("a.txt", "a\n")]);
    let workspace = dir.path().join("ws");
    frozen
        .materialize(&bundle, &workspace, &MaterializeOptions::default())
        .await
        .unwrap();
    let marker = std::fs::read_to_string(workspace.join(".materialized")).unwrap();
    assert_eq!(
        marker,
        format!("{} {}", bundle.location, bundle.size.unwrap()),
        "it read the whole archive through archive@0.2.0"
    );
}
