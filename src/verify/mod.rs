//! Verifying a candidate before it gets users, and production after it has them: HTTP checks, the smoke-test
//! command, and the KPI load probe, all sent to app routes through [`route_client::RouteClient`].

pub mod http_checks;
pub mod kpi;
pub mod route_client;
pub mod smoke;

#[cfg(test)]
mod test_server;
