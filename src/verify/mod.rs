//! Verifying a candidate before it gets users, and production after it has them: HTTP checks, the smoke-test
//! command, and the KPI load probe, all sent to app routes through [`route_client::RouteClient`], and the real
//! traffic of an app as Log Cache recorded it ([`traffic`]).

pub(crate) mod http_checks;
pub(crate) mod kpi;
pub(crate) mod route_client;
pub(crate) mod smoke;
pub(crate) mod traffic;

#[cfg(test)]
mod test_server;
