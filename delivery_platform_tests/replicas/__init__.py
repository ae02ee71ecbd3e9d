"""What each vendor holds after applying our files in delivery order, modelled from its document.

One module per vendor; each replica has `apply(received)` for one delivered file (see
delivery_platform_tests.scenario.Received) and exposes its state for comparison with the
warehouse's truth. Rules are quoted from the vendor document where they are applied.
"""
