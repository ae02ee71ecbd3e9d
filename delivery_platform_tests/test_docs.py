"""The README's generated sections match the code they are generated from."""

from delivery_platform import spec_docs


def test_readme_spec_tables_match_the_pandera_models():
    text = spec_docs.README.read_text()
    current = text.partition(spec_docs.START)[2].partition(spec_docs.END)[0].strip()
    assert current == spec_docs.render().strip(), (
        "the README's spec tables differ from the pandera models: run `make readme` and commit README.md")


def test_spec_tables_show_rules_of_a_model():
    import pandera.pandas as pa

    class Example(pa.DataFrameModel):
        """An example file."""

        ip: str = pa.Field(str_matches=r"^\d+$", description="the address (section 4)")
        kind: str = pa.Field(isin=["app", "web"], nullable=True)

        class Config:
            strict = True

    table = spec_docs.model_table(Example)
    assert "| `ip` | str | yes | str_matches `^\\d+$` | the address (section 4) |" in table
    assert "isin `app`, `web`" in table and "may be empty" in table and "strict" in table
