//! A simulator shuts down cleanly: `Sim::wait` returns after `shutdown`, connected
//! socketcand clients see their connection closed, and both ports stop accepting.

mod common;

use common::{connect, http, recv_until, start_demo, within};
use ringhub_node::can::CanBus;
use ringhub_sim::server::Exit;

#[tokio::test]
async fn shutdown_closes_clients_and_ports() {
    let sim = start_demo().await;
    let (bus_addr, api) = (sim.socketcand_addr(), sim.control_addr());
    let mut client = connect(&sim, "cab-a").await;
    recv_until(&mut client, "a first frame", |_| true).await;
    assert_eq!(http(api, "GET", "/violations", None).await.status, 200);

    sim.shutdown();
    let exit = within("the simulator to stop", sim.wait())
        .await
        .expect("no IO error");
    assert!(matches!(exit, Exit::Shutdown), "{exit:?}");

    within("the client to see the end", async {
        // Frames already in flight may still arrive; then the connection ends.
        while client.recv().await.is_ok() {}
    })
    .await;
    assert!(tokio::net::TcpStream::connect(bus_addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(api).await.is_err());
}
