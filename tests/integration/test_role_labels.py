"""Permission names are translatable in the role editor (CL-ORG-4)."""

def test_role_editor_names_permissions_in_the_users_language(app, world, web):
    c = web("admin")
    with app.app_context():
        role_id = app.appbuilder.sm.find_role("Admin").id
    page = c.get(f"/roles/edit/{role_id}").get_data(as_text=True)
    assert "Reassign — Clients" in page
    c.get("/lang/es")
    page = c.get(f"/roles/edit/{role_id}").get_data(as_text=True)
    assert "Reasignar — Clientes" in page
