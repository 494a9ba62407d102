//! A forum's folder that the service does not serve. `check` run from a
//! second forum's root on the machine judges what the service serves (its
//! unit names the root): saying "All good" there would be about the other
//! forum.

use std::path::Path;

use super::Finding;

/// `check` run in a forum's folder that the service does not serve (a
/// second forum on the machine): saying "All good" there would judge the
/// other forum.
pub(super) fn check_other_forum(cwd: &Path, served: Option<&Path>) -> Option<Finding> {
    let here = cwd.join("config.php");
    let served = served?;
    if !here.is_file() {
        return None;
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(cwd, served) {
        return None;
    }
    Some(Finding::fail(
        "forum",
        format!(
            "this folder holds a forum ({}), but flarum-ws judged as configured serves {}: nothing above is about this forum",
            here.display(),
            served.display()
        ),
        format!(
            "to judge this forum: flarum-ws check --root {}; to serve it too, run a second flarum-ws with its own port and FLARUM_WS_ROOT (docs/operations.md)",
            cwd.display()
        ),
    ))
}
