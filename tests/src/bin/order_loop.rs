//! Places orders on the SQLite files in the directory given as the only argument, in a
//! loop, until killed. The kill test runs it as a child process and SIGKILLs it at
//! random moments, then checks that every commit was all-or-nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use inventory::{Currency, Money, NewProduct, ProductName, Quantity, Sku};
use orchestration::{DatabaseUrl, Fabric, Topology};
use orders::CustomerId;
use tests::order_loop::{INITIAL_STOCK, SKUS};
use workflows::{PlaceOrder, PlaceOrderCommand};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: order-loop DIR");
        return ExitCode::FAILURE;
    };
    match run(dir).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("order-loop: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let topology = Topology::new(DatabaseUrl::Sqlite { dir });
    let fabric = Fabric::connect(&topology, migrations::all()).await?;
    fabric.migrate().await?;
    let catalog = fabric.connection(inventory::SCHEMA)?;
    for sku in SKUS {
        let product = NewProduct {
            sku: Sku::parse(sku)?,
            name: ProductName::parse(sku)?,
            price: Money::new(100, Currency::parse("EUR")?)?,
            initial_stock: INITIAL_STOCK,
        };
        match inventory::add_product(catalog, &product, Utc::now()).await {
            Ok(_) | Err(inventory::Error::DuplicateSku { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let workflow = PlaceOrder::new(fabric.clone(), chrono::Duration::minutes(15));
    let customer = CustomerId::parse("killer")?;
    loop {
        let mut skus = SKUS.to_vec();
        fastrand::shuffle(&mut skus);
        let lines = skus[..fastrand::usize(1..=SKUS.len())]
            .iter()
            .map(|sku| Ok((Sku::parse(sku)?, Quantity::new(fastrand::i64(1..=3))?)))
            .collect::<Result<Vec<_>, inventory::Invalid>>()?;
        let command = PlaceOrderCommand {
            customer_id: customer.clone(),
            lines,
        };
        workflow.place(&command, Utc::now()).await?;
    }
}
