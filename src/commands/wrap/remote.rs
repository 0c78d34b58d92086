//! Remote servers in a client's config (a `url`, not a `command`): wrapped
//! as toolwarden in front of the URL, and given back by unwrap.
//!
//! A header's value never becomes a visible argument: it goes into the
//! entry's `env` as `TOOLWARDEN_HEADER_NAME`, and the argument is
//! `--header 'Name: ${TOOLWARDEN_HEADER_NAME}'`, which toolwarden reads
//! from its environment at start. Unwrap takes those values back out of
//! `env`.

use super::CommandLine;

/// What names each header's value in the entry's `env`.
const ENV_PREFIX: &str = "TOOLWARDEN_HEADER_";

/// Variables for an entry's `env`: names and values.
pub type Vars = Vec<(String, String)>;

/// A remote server as a client's config has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub url: String,
    /// The legacy HTTP+SSE transport (`"type": "sse"`).
    pub sse: bool,
    /// Headers with literal values (they go into `env`).
    pub headers: Vec<(String, String)>,
    /// Headers whose value is read from a variable the client has (Codex's
    /// `bearer_token_env_var` and `env_http_headers`): `${VAR}` in the
    /// value, and the variable forwarded to toolwarden.
    pub from_env: Vec<(String, String)>,
}

/// Whether a server command is a URL toolwarden connects to.
pub fn is_url(command: &str) -> bool {
    command.starts_with("https://") || command.starts_with("http://")
}

/// The variable that carries header `name`'s value: its name in capitals,
/// other characters as `_`.
fn env_name(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{ENV_PREFIX}{upper}")
}

/// toolwarden's arguments for `remote` after its own options (`--`
/// included), and the variables the entry's `env` gets.
pub fn wrapped_args(remote: &Remote) -> (Vec<String>, Vars) {
    let mut args = Vec::new();
    let mut env = Vec::new();
    if remote.sse {
        args.extend(["--transport".to_owned(), "sse".to_owned()]);
    }
    for (name, value) in &remote.headers {
        let var = env_name(name);
        args.extend(["--header".to_owned(), format!("{name}: ${{{var}}}")]);
        env.push((var, value.clone()));
    }
    for (name, value) in &remote.from_env {
        args.extend(["--header".to_owned(), format!("{name}: {value}")]);
    }
    args.push("--".to_owned());
    args.push(remote.url.clone());
    (args, env)
}

/// The remote server a wrapped command line stands for, with each literal
/// header's value looked up in the entry's `env`; and the variables of
/// `env` that toolwarden's wrapping put there. `None` when the line is not
/// toolwarden in front of a URL.
pub fn unwrapped(
    toolwarden_args: &[String],
    server: &CommandLine,
    env: impl Fn(&str) -> Option<String>,
) -> Option<(Remote, Vec<String>)> {
    if !is_url(&server.command) || !server.args.is_empty() {
        return None;
    }
    let mut remote = Remote {
        url: server.command.clone(),
        sse: false,
        headers: Vec::new(),
        from_env: Vec::new(),
    };
    let mut used = Vec::new();
    let mut args = toolwarden_args.iter().take_while(|a| *a != "--");
    while let Some(arg) = args.next() {
        let value = match arg.split_once('=') {
            Some((name, value)) if name == "--header" || name == "--transport" => {
                Some((name, value.to_owned()))
            }
            _ if arg == "--header" || arg == "--transport" => {
                args.next().map(|v| (arg.as_str(), v.clone()))
            }
            _ => None,
        };
        match value {
            Some(("--transport", transport)) => remote.sse = transport == "sse",
            Some((_, header)) => {
                let (name, value) = header.split_once(':')?;
                let value = value.trim_start();
                let ours = value
                    .strip_prefix("${")
                    .and_then(|v| v.strip_suffix('}'))
                    .filter(|var| var.starts_with(ENV_PREFIX));
                match ours {
                    Some(var) => {
                        remote.headers.push((name.to_owned(), env(var)?));
                        used.push(var.to_owned());
                    }
                    None => remote.from_env.push((name.to_owned(), value.to_owned())),
                }
            }
            None => {}
        }
    }
    Some((remote, used))
}

/// The variable a `${VAR}` value names, when that is all it is.
pub fn variable(value: &str) -> Option<&str> {
    value.strip_prefix("${").and_then(|v| v.strip_suffix('}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_go_into_env_and_come_back() {
        let remote = Remote {
            url: "https://mcp.example/mcp".into(),
            sse: true,
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            from_env: vec![("X-Team".into(), "${TEAM_ID}".into())],
        };
        let (args, env) = wrapped_args(&remote);
        assert_eq!(
            args,
            [
                "--transport",
                "sse",
                "--header",
                "Authorization: ${TOOLWARDEN_HEADER_AUTHORIZATION}",
                "--header",
                "X-Team: ${TEAM_ID}",
                "--",
                "https://mcp.example/mcp"
            ]
        );
        assert!(!args.iter().any(|a| a.contains("s3cret")));
        assert_eq!(
            env,
            [(
                "TOOLWARDEN_HEADER_AUTHORIZATION".to_owned(),
                "Bearer s3cret".to_owned()
            )]
        );
        let dash = args.iter().position(|a| a == "--").unwrap();
        let server = CommandLine {
            command: args[dash + 1].clone(),
            args: Vec::new(),
        };
        let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let (back, used) = unwrapped(&args, &server, lookup).unwrap();
        assert_eq!(back, remote);
        assert_eq!(used, ["TOOLWARDEN_HEADER_AUTHORIZATION"]);
        // A value gone from env: not unwrapped into a header without it.
        assert!(unwrapped(&args, &server, |_| None).is_none());
    }
}
