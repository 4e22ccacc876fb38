//! `/opt/resource/check`: prints the version running in production.
fn main() {
    cf_blue_green_resource::protocol::run_check(cf_blue_green_resource::check::run)
}
