//! Chapter 02 end to end. (Tests are being written.)

#[test]
fn placeholder_builds() {
    assert!(support::bin("ch02-layers").exists());
}
