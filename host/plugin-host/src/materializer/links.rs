//! Where a staged link really leads. A link's text says little: `d/l -> ..` plus
//! `y -> d/l/../../etc/passwd` looks harmless judged lexically, yet the kernel resolves `d/l/..` as
//! the parent of `d/l`'s *target*, and `y` reads the host's `/etc/passwd`. So links are resolved
//! the way the kernel does, component by component and link by link, inside the staging root.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most links followed while resolving one link (the kernel's own limit).
const MAX_LINK_HOPS: usize = 40;

/// Resolves the link at `link` (relative to `root`) inside `root`, following every link met on the
/// way. `Ok` is where it leads, relative to `root`; `Err` says why it leaves `root` (an absolute
/// target, a `..` above the root after resolution) or cannot be resolved. A component that does
/// not exist is judged by its name.
pub fn resolve_inside(root: &Path, link: &Path) -> Result<PathBuf, String> {
    let mut resolved: Vec<OsString> = link
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            _ => None,
        })
        .collect();
    let mut pending = VecDeque::new();
    let mut hops = 0;
    push_target(root, link, &mut pending, &mut hops)?;
    while let Some(component) = pending.pop_front() {
        match component {
            Step::Parent => {
                if resolved.pop().is_none() {
                    return Err("it resolves above the workspace".into());
                }
            }
            Step::Name(name) => {
                resolved.push(name);
                let here: PathBuf = resolved.iter().collect();
                let is_link = root
                    .join(&here)
                    .symlink_metadata()
                    .is_ok_and(|meta| meta.file_type().is_symlink());
                if is_link {
                    resolved.pop();
                    push_target(root, &here, &mut pending, &mut hops)?;
                }
            }
        }
    }
    Ok(resolved.iter().collect())
}

enum Step {
    Parent,
    Name(OsString),
}

/// Puts the target of the link at `link` in front of what is left to resolve.
fn push_target(
    root: &Path,
    link: &Path,
    pending: &mut VecDeque<Step>,
    hops: &mut usize,
) -> Result<(), String> {
    *hops += 1;
    if *hops > MAX_LINK_HOPS {
        return Err(format!("more than {MAX_LINK_HOPS} links in a chain"));
    }
    let target = std::fs::read_link(root.join(link))
        .map_err(|err| format!("{} is an unreadable link: {err}", link.display()))?;
    let mut steps = Vec::new();
    for component in target.components() {
        match component {
            Component::Normal(name) => steps.push(Step::Name(name.to_os_string())),
            Component::ParentDir => steps.push(Step::Parent),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{} points to the absolute path {}",
                    link.display(),
                    target.display()
                ));
            }
        }
    }
    for step in steps.into_iter().rev() {
        pending.push_front(step);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn staged() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/file"), "x").unwrap();
        dir
    }

    fn leaves(root: &Path, link: &str) -> bool {
        resolve_inside(root, Path::new(link)).is_err()
    }

    #[test]
    fn plain_links_inside_resolve_and_absolute_or_upward_ones_leave() {
        let dir = staged();
        let root = dir.path();
        symlink("b/file", root.join("a/ok")).unwrap();
        symlink("../a/./b", root.join("a/up-and-down")).unwrap();
        symlink("..", root.join("top")).unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("a/../../x", root.join("above")).unwrap();
        assert_eq!(
            resolve_inside(root, Path::new("a/ok")).unwrap(),
            Path::new("a/b/file")
        );
        assert_eq!(
            resolve_inside(root, Path::new("a/up-and-down")).unwrap(),
            Path::new("a/b")
        );
        assert!(leaves(root, "top"));
        assert!(leaves(root, "abs"));
        assert!(leaves(root, "above"));
    }

    #[test]
    fn a_chain_through_a_link_to_a_parent_is_followed_like_the_kernel_does() {
        let dir = staged();
        let root = dir.path();
        // `d/l -> ..` is fine alone (it is the root); through it, `..` goes above the root.
        std::fs::create_dir(root.join("d")).unwrap();
        symlink("..", root.join("d/l")).unwrap();
        assert_eq!(
            resolve_inside(root, Path::new("d/l")).unwrap(),
            Path::new("")
        );
        symlink("d/l/../../etc/passwd", root.join("y")).unwrap();
        assert!(leaves(root, "y"), "lexically inside, really outside");
        // `..` in every position, through a chain of links to directories.
        symlink("a/b", root.join("ab")).unwrap();
        symlink("ab/..", root.join("a-again")).unwrap();
        assert_eq!(
            resolve_inside(root, Path::new("a-again")).unwrap(),
            Path::new("a")
        );
        symlink("a-again/../..", root.join("chain-out")).unwrap();
        assert!(leaves(root, "chain-out"));
        symlink("ab/../../ab/file", root.join("chain-in")).unwrap();
        assert_eq!(
            resolve_inside(root, Path::new("chain-in")).unwrap(),
            Path::new("a/b/file")
        );
        symlink("../../..", root.join("a/b/deep-out")).unwrap();
        assert!(leaves(root, "a/b/deep-out"));
    }

    #[test]
    fn link_loops_are_refused() {
        let dir = staged();
        let root = dir.path();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let err = resolve_inside(root, Path::new("loop1")).unwrap_err();
        assert!(err.contains("links in a chain"), "{err}");
    }
}
