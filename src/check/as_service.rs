//! `check` judged by systemd itself. Where systemd is PID 1 and
//! flarum-ws.service is loaded, `check` asks systemd for the unit as it has
//! merged it (drop-ins, a reset `EnvironmentFile=`, a replaced `ExecStart=`)
//! and runs its judging part in a transient unit with the same user, group,
//! environment, working directory, capabilities and sandbox, executing the
//! unit's own `ExecStart=` with `serve` swapped for `check`. So the
//! environment file is parsed by systemd, config.php is evaluated by PHP as
//! the service's user with the service's variables, the port is bound with
//! the service's capabilities, and files are opened through its sandbox:
//! every verdict is the answer the service itself would get.
//!
//! The judging process writes its findings as JSON on stdout (systemd-run
//! `--pipe` carries them back); what it needs from the admin's side (the
//! names of the shell's variables, to point out the ones the service does
//! not get) it reads as JSON on stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Finding;
use super::nginx_config::NginxDump;

/// The service's unit name.
pub const SERVICE: &str = "flarum-ws.service";

/// Properties copied from the unit into the transient one, as text that
/// `systemctl show` prints and `systemd-run -p` takes back: who the service
/// runs as and what its sandbox lets it reach. An empty value is left out,
/// except for the bounding set, where empty means "no capabilities".
const COPIED: [&str; 24] = [
    "User",
    "Group",
    "SupplementaryGroups",
    "DynamicUser",
    "UMask",
    "RootDirectory",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateUsers",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "RestrictAddressFamilies",
    "SystemCallFilter",
    "SystemCallArchitectures",
    "MemoryDenyWriteExecute",
    "IPAddressAllow",
    "IPAddressDeny",
];

/// flarum-ws.service as systemd has merged it.
#[derive(Debug, Clone)]
pub struct ServiceView {
    /// `ExecStart=`'s program and arguments (the last `ExecStart=` wins).
    pub exec_start: Vec<String>,
    /// `NAME=value` of every `Environment=` (systemd-run `-E`).
    pub environment: Vec<String>,
    /// `EnvironmentFile=` values, `-` marking an optional one.
    pub environment_files: Vec<String>,
    /// `WorkingDirectory=`, `-` marking an optional one.
    pub working_directory: Option<String>,
    /// `Key=value` for each of [`COPIED`] that is set.
    pub properties: Vec<String>,
    /// `User=` (empty: root).
    pub user: String,
    /// The unit file and its drop-ins, for the admin.
    pub files: Vec<String>,
}

impl ServiceView {
    /// `subcommand`'s command line as the unit would run it: its program
    /// (and anything before `serve`), the subcommand, the unit's `serve`
    /// flags (or `source_args` instead, when given), `extra`, and
    /// `--as-service`; `None` when ExecStart does not run `serve` (a
    /// wrapper script).
    pub fn command_line(
        &self,
        subcommand: &str,
        source_args: &[String],
        extra: &[String],
    ) -> Option<Vec<String>> {
        let argv = &self.exec_start;
        let serve = argv.iter().skip(1).position(|arg| arg == "serve")? + 1;
        let mut line: Vec<String> = argv[..serve].to_vec();
        line.push(subcommand.to_owned());
        if source_args.is_empty() {
            line.extend(argv[serve + 1..].iter().cloned());
        } else {
            line.extend(source_args.iter().cloned());
        }
        line.extend(extra.iter().cloned());
        line.push("--as-service".into());
        Some(line)
    }

    /// `systemd-run` starting `argv` in a transient unit with this unit's
    /// user, environment, working directory, capabilities and sandbox,
    /// waiting for it and connecting it to this process's standard streams.
    pub fn transient(&self, what: &str, argv: &[String]) -> Command {
        let mut command = Command::new("systemd-run");
        command.args([
            "--wait",
            "--pipe",
            "--collect",
            "--quiet",
            "--service-type=exec",
        ]);
        command.arg(format!("--description=flarum-ws {what}"));
        for property in &self.properties {
            command.arg(format!("--property={property}"));
        }
        for file in &self.environment_files {
            command.arg(format!("--property=EnvironmentFile={file}"));
        }
        if let Some(dir) = &self.working_directory {
            command.arg(format!("--property=WorkingDirectory={dir}"));
        }
        for variable in &self.environment {
            command.arg(format!("--setenv={variable}"));
        }
        command.arg("--").args(argv);
        command
    }

    /// What systemd needs before it starts the program and does not find
    /// (its "resources" result, told only in the journal): a required
    /// environment file or working directory.
    fn missing_resource(&self) -> Option<String> {
        let required = |path: &String| !path.starts_with('-') && !Path::new(path).exists();
        if let Some(file) = self.environment_files.iter().find(|f| required(f)) {
            return Some(format!(
                "its EnvironmentFile={file} does not exist, so systemd refuses to start the service (write it, or mark it optional: EnvironmentFile=-{file})"
            ));
        }
        let dir = self.working_directory.as_ref().filter(|d| required(d))?;
        Some(format!(
            "its WorkingDirectory={dir} does not exist, so systemd refuses to start the service"
        ))
    }
}

/// Why `check` judges by reading the unit files instead of asking systemd.
#[derive(Debug)]
pub enum NotAsked {
    /// No flarum-ws.service for systemd (or no systemd): nothing to imitate.
    NoService,
    /// A reason the admin is told; the unit files are read instead.
    Imitated(String),
}

/// What `check` asks systemd, or why it cannot.
pub fn service_view() -> Result<ServiceView, NotAsked> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(NotAsked::Imitated(
            "systemd is not this machine's service manager".into(),
        ));
    }
    let show = systemctl_show(&["LoadState", "FragmentPath", "DropInPaths"])
        .map_err(NotAsked::Imitated)?;
    if show.iter().any(|(k, v)| k == "LoadState" && v != "loaded") {
        return Err(NotAsked::NoService);
    }
    let mut files: Vec<String> = show
        .iter()
        .filter(|(k, v)| (k == "FragmentPath" || k == "DropInPaths") && !v.is_empty())
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned))
        .collect();
    files.dedup();
    let exec_start = dbus_property("ExecStart")
        .map_err(NotAsked::Imitated)?
        .as_array()
        .and_then(|starts| starts.last())
        .and_then(|start| start.get(1))
        .and_then(Value::as_array)
        .map(|argv| {
            argv.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|argv| !argv.is_empty())
        .ok_or_else(|| NotAsked::Imitated(format!("{SERVICE} has no ExecStart=")))?;
    let environment = dbus_property("Environment")
        .map_err(NotAsked::Imitated)?
        .as_array()
        .map(|vars| {
            vars.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let environment_files = dbus_property("EnvironmentFiles")
        .map_err(NotAsked::Imitated)?
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|file| {
                    let path = file.get(0)?.as_str()?;
                    let optional = file.get(1)?.as_bool()?;
                    Some(format!("{}{path}", if optional { "-" } else { "" }))
                })
                .collect()
        })
        .unwrap_or_default();
    // `!` marks a directory that may be missing (`-` in the unit file).
    let working_directory = dbus_property("WorkingDirectory")
        .map_err(NotAsked::Imitated)?
        .as_str()
        .filter(|dir| !dir.is_empty())
        .map(|dir| match dir.strip_prefix('!') {
            Some(dir) => format!("-{dir}"),
            None => dir.to_owned(),
        });
    let copied = systemctl_show(&COPIED).map_err(NotAsked::Imitated)?;
    let user = copied
        .iter()
        .find(|(k, _)| k == "User")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let properties = copied
        .into_iter()
        .filter(|(k, v)| !v.is_empty() || k == "CapabilityBoundingSet")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Ok(ServiceView {
        exec_start,
        environment,
        environment_files,
        working_directory,
        properties,
        user,
        files,
    })
}

/// `systemctl show flarum-ws.service -p …` as (key, value) pairs.
fn systemctl_show(properties: &[&str]) -> Result<Vec<(String, String)>, String> {
    Ok(systemctl_show_text(SERVICE, properties)?
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// What `systemctl show UNIT -p …` prints: `KEY=value` lines.
pub(super) fn systemctl_show_text(unit: &str, properties: &[&str]) -> Result<String, String> {
    let mut command = Command::new("systemctl");
    command.args(["show", unit]);
    for property in properties {
        command.args(["-p", property]);
    }
    let stdout = output_of(command, &format!("systemctl show {unit}"))?;
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// The standard output of `command`, or what went wrong, with `what` it was.
fn output_of(mut command: Command, what: &str) -> Result<Vec<u8>, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

/// One property of the unit's `Service` interface, typed, from systemd's
/// D-Bus API (`busctl --json`): `ExecStart`'s argv and the environment keep
/// their spaces and quotes there, where `systemctl show` flattens them.
fn dbus_property(name: &str) -> Result<Value, String> {
    let mut command = Command::new("busctl");
    command.args([
        "--json=short",
        "get-property",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1/unit/flarum_2dws_2eservice",
        "org.freedesktop.systemd1.Service",
        name,
    ]);
    let stdout = output_of(command, &format!("busctl get-property {name}"))?;
    let value: Value = serde_json::from_slice(&stdout)
        .map_err(|e| format!("busctl printed no JSON for {name}: {e}"))?;
    Ok(value["data"].clone())
}

/// What the admin's side tells the judging process on its stdin.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Context {
    /// Names of the variables of the shell `check` was started from (no
    /// values): those the service lacks are pointed out.
    pub shell: Vec<String>,
    /// nginx's configuration as `nginx -T` printed it here, as root (the
    /// service's user may not run it), or why it could not.
    pub nginx: Option<Result<NginxDump, String>>,
}

/// What the judging process answers on stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub checks: Vec<Finding>,
    /// The forum root it judged (where config.php was looked for).
    pub root: Option<PathBuf>,
}

/// The arguments `check` adds for the judging process (its own options
/// that are not settings: `--live` and the like).
pub struct Judge<'a> {
    pub view: &'a ServiceView,
    /// `check`'s own options for the judging process.
    pub check_args: Vec<String>,
    /// Settings flags given to this `check`, which replace the unit's.
    pub source_args: Vec<String>,
    pub context: Context,
}

impl Judge<'_> {
    /// The command line of the judging process: the unit's program with
    /// `serve` swapped for `check`; `None` when ExecStart does not run
    /// `serve` (a wrapper script).
    fn argv(&self) -> Option<Vec<String>> {
        let mut extra = vec!["--json".to_owned()];
        extra.extend(self.check_args.iter().cloned());
        self.view.command_line("check", &self.source_args, &extra)
    }

    /// The judging process's findings, or why it could not run (the admin
    /// is told; the unit files are read instead).
    pub fn run(&self) -> Result<Report, Failed> {
        let argv = self.argv().ok_or_else(|| {
            Failed::CannotAsk(format!(
                "ExecStart= runs {}, not `flarum-ws serve`",
                self.view.exec_start.join(" ")
            ))
        })?;
        let program = Path::new(&argv[0]);
        if !program.is_file() {
            return Err(Failed::Broken(Finding::fail(
                "service",
                format!(
                    "{SERVICE}'s ExecStart= runs {}, which does not exist: the service cannot start",
                    program.display()
                ),
                "install flarum-ws there, or point ExecStart= at it (systemctl edit flarum-ws)",
            )));
        }
        if !nix::unistd::Uid::effective().is_root() {
            return Err(Failed::CannotAsk(
                "only root may start a check as the service's user: run sudo flarum-ws check for systemd's own answers".into(),
            ));
        }
        let mut command = self
            .view
            .transient("check, judging as flarum-ws.service runs", &argv);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failed::CannotAsk(format!("cannot run systemd-run: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let context = serde_json::to_vec(&self.context).unwrap_or_default();
            let _ = stdin.write_all(&context);
        }
        let output = child
            .wait_with_output()
            .map_err(|e| Failed::CannotAsk(format!("systemd-run failed: {e}")))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Ok(report) = serde_json::from_slice::<Report>(&output.stdout) {
            // What the judging process logged (its warnings) is the admin's too.
            eprint!("{stderr}");
            return Ok(report);
        }
        let said = stderr.trim();
        Err(match output.status.code() {
            Some(2) if said.contains("--as-service") => Failed::CannotAsk(format!(
                "{} is older than this check and cannot judge as the service",
                program.display()
            )),
            _ => Failed::Broken(Finding::fail(
                "service",
                format!(
                    "systemd could not run {} as {SERVICE} runs it: {}",
                    program.display(),
                    if said.is_empty() {
                        self.view
                            .missing_resource()
                            .unwrap_or_else(|| format!("{}", output.status))
                    } else {
                        said.to_owned()
                    }
                ),
                "see journalctl -u flarum-ws for the service's own error, and systemctl cat flarum-ws for its unit",
            )),
        })
    }
}

/// Why the judging process gave no findings.
#[derive(Debug)]
pub enum Failed {
    /// systemd cannot be asked this way (the unit files are read instead).
    CannotAsk(String),
    /// The service itself could not run as systemd would run it.
    Broken(Finding),
}

/// The first finding of a check judged by systemd: how it was judged.
pub fn judged_by_systemd(view: &ServiceView) -> Finding {
    Finding::pass(
        "service",
        format!(
            "judged by systemd: this check ran as {SERVICE} runs ({}; {}), as {}, with its environment{}, working directory and sandbox",
            view.files.join(", "),
            view.exec_start.join(" "),
            if view.user.is_empty() {
                "root"
            } else {
                &view.user
            },
            if view.environment_files.is_empty() {
                String::new()
            } else {
                format!(" ({})", view.environment_files.join(", "))
            },
        ),
    )
}

/// The service's judging process reads what the admin's side sends.
pub fn read_context() -> Context {
    serde_json::from_reader(std::io::stdin().lock()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(argv: &[&str]) -> ServiceView {
        ServiceView {
            exec_start: argv.iter().map(|s| (*s).to_owned()).collect(),
            environment: Vec::new(),
            environment_files: Vec::new(),
            working_directory: None,
            properties: Vec::new(),
            user: "www-data".into(),
            files: Vec::new(),
        }
    }

    #[test]
    fn the_units_program_runs_check_with_its_own_flags() {
        let view = view(&["/usr/bin/flarum-ws", "serve", "--root", "/srv/forum"]);
        let judge = Judge {
            view: &view,
            check_args: vec!["--live".into()],
            source_args: Vec::new(),
            context: Context::default(),
        };
        assert_eq!(
            judge.argv().unwrap(),
            [
                "/usr/bin/flarum-ws",
                "check",
                "--root",
                "/srv/forum",
                "--json",
                "--live",
                "--as-service"
            ]
        );
        let wrapper = self::view(&["/usr/local/bin/start-realtime"]);
        let judge = Judge {
            view: &wrapper,
            ..judge
        };
        assert!(judge.argv().is_none());
    }
}
