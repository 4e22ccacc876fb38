//! Reading the service bindings Cloud Foundry hands the app in VCAP_SERVICES.
//!
//! VCAP_SERVICES is a JSON object from service label to a list of bound
//! instances, each with a `name`, `label`, `tags` and `credentials`. The app
//! needs two things from it: the instance names (to show in `/env`) and
//! whether one of them is a Redis to keep sessions in.

use serde_json::{Map, Value};

/// What the app takes from VCAP_SERVICES.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    /// Every bound instance's name, sorted.
    pub names: Vec<String>,
    /// The first instance that looks like a Redis, in label order.
    pub redis: Option<RedisTarget>,
}

/// Where and how to reach a bound Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: Option<u32>,
}

impl RedisTarget {
    /// `host:port` in the form `TcpStream::connect` takes, brackets around IPv6.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

const DEFAULT_REDIS_PORT: u16 = 6379;

/// Parses VCAP_SERVICES. A Redis binding that cannot be understood is an
/// error rather than a silent fall-back to memory: the session test must
/// fail loudly if the binding it set up is not the one in use.
pub fn parse(json: &str) -> Result<Bindings, String> {
    let value: Value = serde_json::from_str(json).map_err(|err| format!("not JSON: {err}"))?;
    let labels = value.as_object().ok_or("expected an object of service labels")?;

    let mut bindings = Bindings::default();
    for (label, instances) in labels {
        let instances = instances.as_array().ok_or_else(|| format!("expected a list of instances under {label:?}"))?;
        for instance in instances {
            let instance =
                instance.as_object().ok_or_else(|| format!("expected an object for each instance under {label:?}"))?;
            let name = instance.get("name").and_then(Value::as_str);
            if let Some(name) = name {
                bindings.names.push(name.to_string());
            }
            if bindings.redis.is_none() {
                bindings.redis =
                    redis_target(label, instance).map_err(|err| format!("service {}: {err}", name.unwrap_or(label)))?;
            }
        }
    }
    bindings.names.sort();
    Ok(bindings)
}

/// The instance's Redis, if its credentials hold a `redis://` URI, or a host
/// and port while its name, label or a tag says "redis".
fn redis_target(label: &str, instance: &Map<String, Value>) -> Result<Option<RedisTarget>, String> {
    let Some(credentials) = instance.get("credentials").and_then(Value::as_object) else {
        return Ok(None);
    };

    let uri = ["uri", "url"]
        .iter()
        .filter_map(|key| credentials.get(*key).and_then(Value::as_str))
        .find(|uri| has_redis_scheme(uri));
    if let Some(uri) = uri {
        return parse_redis_uri(uri).map(Some);
    }

    let host = credentials.get("host").and_then(Value::as_str);
    let port = credentials.get("port");
    let (Some(host), Some(port)) = (host, port) else {
        return Ok(None);
    };
    if !mentions_redis(label, instance) {
        return Ok(None);
    }
    let port = match port {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("credentials port {port} is not a port number"))?;
    Ok(Some(RedisTarget {
        host: host.to_string(),
        port,
        username: None,
        password: credentials.get("password").and_then(Value::as_str).map(str::to_string),
        database: None,
    }))
}

fn has_redis_scheme(uri: &str) -> bool {
    uri.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("redis://"))
}

fn mentions_redis(label: &str, instance: &Map<String, Value>) -> bool {
    let is_redis = |text: &str| text.to_ascii_lowercase().contains("redis");
    let tags = instance.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
    is_redis(label)
        || ["name", "label"]
            .iter()
            .filter_map(|key| instance.get(*key).and_then(Value::as_str))
            .chain(tags)
            .any(is_redis)
}

/// Parses `redis://[[user]:password@]host[:port][/database]`.
fn parse_redis_uri(uri: &str) -> Result<RedisTarget, String> {
    let rest = &uri["redis://".len()..];
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };

    let (username, password) = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (non_empty(percent_decode(user)?), Some(percent_decode(password)?)),
            None => (non_empty(percent_decode(userinfo)?), None),
        },
        None => (None, None),
    };

    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return Err("redis URI has no host".to_string());
    }
    let database = match path {
        "" => None,
        db => Some(db.parse::<u32>().map_err(|_| format!("redis URI database {db:?} is not a number"))?),
    };
    Ok(RedisTarget { host, port, username, password, database })
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("redis URI has an unclosed '['")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(port) => port.parse::<u16>().map_err(|_| format!("redis URI port {port:?} is not a port number"))?,
        None => DEFAULT_REDIS_PORT,
    };
    Ok((host.to_string(), port))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Brokers percent-encode passwords that contain reserved characters.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("redis URI has a bad percent escape")?;
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| "redis URI credentials are not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_instance_names_sorted() {
        let bindings = parse(
            r#"{"user-provided":[{"name":"zeta","credentials":{}},{"name":"alpha","credentials":{}}],
                "p-mysql":[{"name":"db","credentials":{"uri":"mysql://x"}}]}"#,
        )
        .unwrap();
        assert_eq!(bindings.names, ["alpha", "db", "zeta"]);
        assert_eq!(bindings.redis, None);
    }

    #[test]
    fn finds_redis_by_uri() {
        let bindings =
            parse(r#"{"user-provided":[{"name":"cache","credentials":{"uri":"redis://:s%40cret@127.0.0.1:7000/2"}}]}"#)
                .unwrap();
        assert_eq!(
            bindings.redis,
            Some(RedisTarget {
                host: "127.0.0.1".into(),
                port: 7000,
                username: None,
                password: Some("s@cret".into()),
                database: Some(2),
            })
        );
    }

    #[test]
    fn finds_redis_by_url_with_user_and_default_port() {
        let bindings = parse(r#"{"x":[{"name":"c","credentials":{"url":"REDIS://app:pw@localhost"}}]}"#).unwrap();
        let redis = bindings.redis.unwrap();
        assert_eq!(redis.address(), "localhost:6379");
        assert_eq!(redis.username.as_deref(), Some("app"));
        assert_eq!(redis.password.as_deref(), Some("pw"));
    }

    #[test]
    fn finds_redis_by_host_and_port_when_a_tag_says_redis() {
        let bindings = parse(
            r#"{"user-provided":[{"name":"sessions","tags":["Redis"],
                "credentials":{"host":"::1","port":"7001","password":"pw"}}]}"#,
        )
        .unwrap();
        let redis = bindings.redis.unwrap();
        assert_eq!(redis.address(), "[::1]:7001");
        assert_eq!(redis.password.as_deref(), Some("pw"));
    }

    #[test]
    fn host_and_port_alone_are_not_taken_for_redis() {
        let bindings =
            parse(r#"{"user-provided":[{"name":"db","tags":["sql"],"credentials":{"host":"h","port":5432}}]}"#)
                .unwrap();
        assert_eq!(bindings.redis, None);
    }

    #[test]
    fn other_schemes_are_not_redis() {
        let bindings = parse(r#"{"x":[{"name":"redis-tls","credentials":{"uri":"rediss://h:1"}}]}"#).unwrap();
        assert_eq!(bindings.redis, None);
    }

    #[test]
    fn malformed_redis_bindings_are_errors() {
        for json in [
            r#"{"x":[{"name":"c","credentials":{"uri":"redis://h:notaport"}}]}"#,
            r#"{"x":[{"name":"c","credentials":{"uri":"redis://h/db"}}]}"#,
            r#"{"x":[{"name":"c","credentials":{"uri":"redis://"}}]}"#,
            r#"{"redis":[{"name":"c","credentials":{"host":"h","port":true}}]}"#,
            r#"{"x":{"name":"c"}}"#,
            r#"[]"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }
}
