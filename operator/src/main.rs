fn main() {
    print!("{}", ferrolb::api::crds_yaml().unwrap());
}
