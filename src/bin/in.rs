//! `/opt/resource/in <dir>`: writes what a version deployed into `<dir>`.
fn main() {
    cf_blue_green_resource::protocol::run_in(cf_blue_green_resource::get::run)
}
