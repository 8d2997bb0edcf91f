//! The catalogue's RPCs: products listed (inactive ones for staff only), read,
//! added and changed by staff, each change in its own transaction.

use tonic::{Request, Response, Status};
use weft_auth::Caller;
use weft_kit::paging::{page_token, parse_page_token};
use weft_proto::order::*;

use crate::access;
use crate::catalog;
use crate::domain::{OrderError, Violations};
use crate::requests::required_id;
use crate::service::OrderApi;

impl OrderApi {
    pub(crate) async fn page_of_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let staff = request
            .extensions()
            .get::<Caller>()
            .is_some_and(Caller::is_staff);
        let req = request.into_inner();
        if req.include_inactive && !staff {
            return Err(Status::from(OrderError::Denied(
                "only staff see inactive products",
            )));
        }
        if req.page_size < 0 {
            return Err(Status::from(OrderError::invalid(
                "page_size",
                "must not be negative",
            )));
        }
        let size = match req.page_size {
            0 => 50,
            n => i64::from(n.min(200)),
        };
        let after = parse_page_token(&req.page_token)?
            .map(|(_, id)| id)
            .unwrap_or_default();
        let mut products = catalog::page(&self.db, &after, size + 1, req.include_inactive).await?;
        let next_page_token = if products.len() as i64 > size {
            products.truncate(size as usize);
            products
                .last()
                .map(|p| page_token(0, &p.product_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListProductsResponse {
            products: products.iter().map(catalog::Product::to_proto).collect(),
            next_page_token,
        }))
    }

    pub(crate) async fn product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let id = required_id(&request.get_ref().product_id, "product_id")?;
        let product = catalog::get(&self.db, &id)
            .await?
            .ok_or_else(|| Status::from(OrderError::ProductNotFound))?;
        Ok(Response::new(GetProductResponse {
            product: Some(product.to_proto()),
        }))
    }

    pub(crate) async fn add_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<CreateProductResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        access::check_catalogue(&caller)?;
        let given = request.into_inner().product.unwrap_or_default();
        let mut v = Violations::default();
        let product_id = catalog::parse_product_id(&given.product_id, "product.product_id", &mut v);
        let name = catalog::parse_name(&given.name, "product.name", &mut v);
        let price = catalog::parse_price(given.unit_price.as_ref(), "product.unit_price", &mut v);
        v.finish(())?;
        let Some((currency, unit_minor)) = price else {
            return Err(Status::from(OrderError::invalid(
                "product.unit_price",
                "is required",
            )));
        };
        let now = weft_events::db::now_micros();
        let product = catalog::Product {
            product_id,
            name,
            currency,
            unit_minor,
            active: given.active,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin().await.map_err(OrderError::from)?;
        if !catalog::insert(&mut tx, &product).await? {
            return Err(Status::from(OrderError::ProductExists));
        }
        tx.commit().await.map_err(OrderError::from)?;
        tracing::info!(product_id = %product.product_id, by = %caller.user_id, "product added");
        Ok(Response::new(CreateProductResponse {
            product: Some(product.to_proto()),
        }))
    }

    pub(crate) async fn change_product(
        &self,
        request: Request<UpdateProductRequest>,
    ) -> Result<Response<UpdateProductResponse>, Status> {
        let caller = weft_auth::caller(&request)?;
        access::check_catalogue(&caller)?;
        let req = request.into_inner();
        let given = req.product.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut v = Violations::default();
        if paths.is_empty() {
            v.add(
                "update_mask",
                "must name at least one of name, unit_price, active",
            );
        }
        let id = required_id(&given.product_id, "product.product_id")?;
        let mut tx = self.db.begin().await.map_err(OrderError::from)?;
        let mut product = catalog::by_ids(&mut tx, std::slice::from_ref(&id))
            .await?
            .remove(&id)
            .ok_or_else(|| Status::from(OrderError::ProductNotFound))?;
        for (i, path) in paths.iter().enumerate() {
            match path.as_str() {
                "name" => product.name = catalog::parse_name(&given.name, "product.name", &mut v),
                "unit_price" => {
                    if let Some((c, minor)) = catalog::parse_price(
                        given.unit_price.as_ref(),
                        "product.unit_price",
                        &mut v,
                    ) {
                        product.currency = c;
                        product.unit_minor = minor;
                    }
                }
                "active" => product.active = given.active,
                other => v.add(
                    format!("update_mask.paths[{i}]"),
                    format!("{other:?} cannot be changed; use name, unit_price or active"),
                ),
            }
        }
        v.finish(())?;
        product.updated_at = weft_events::db::now_micros();
        catalog::update(&mut tx, &product).await?;
        tx.commit().await.map_err(OrderError::from)?;
        tracing::info!(product_id = %product.product_id, by = %caller.user_id, "product changed");
        Ok(Response::new(UpdateProductResponse {
            product: Some(product.to_proto()),
        }))
    }
}
