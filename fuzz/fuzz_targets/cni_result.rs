//! A CNI plugin's ADD result, as the pod's network is read from it:
//! addresses, gateway, interface and DNS.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(result) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let a = skiff_net::attach::Attachment {
        name: "fuzz".into(),
        ifname: "eth0".into(),
        args: Vec::new(),
        config: serde_json::json!({"cniVersion": "1.0.0", "name": "fuzz", "plugins": [{"type": "bridge"}]}),
        result: Some(result),
    };
    let _ = a.ips();
    let _ = a.gateway();
    let _ = a.pod_interface();
    let _ = a.dns();
});
