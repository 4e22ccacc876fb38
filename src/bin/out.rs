//! `/opt/resource/out <dir>`: deploys blue-green from the build's inputs in `<dir>`.
fn main() {
    cf_blue_green_resource::protocol::run_out(cf_blue_green_resource::deploy::run)
}
